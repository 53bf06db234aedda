"README.md is generated from nbs/index.ipynb and links every notebook."
import re
from configparser import ConfigParser

from conftest import ROOT
from dpsd_nb.readme import readme


def test_readme_is_fresh():
    assert readme(ROOT, check=True), "README.md is stale: run `python -m dpsd_nb.readme` and commit it"


def test_every_notebook_is_linked_with_its_colab_badge():
    cfg = ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini')
    repo = cfg['DEFAULT']['git_url'].removeprefix('https://github.com/')
    text = (ROOT/'README.md').read_text()
    notebooks = sorted(p.name for p in (ROOT/'nbs').glob('[0-9]*.ipynb'))
    assert notebooks, "no notebooks found"
    for nb in notebooks:
        assert f"](nbs/{nb})" in text, f"{nb} is not linked from index.ipynb"
        assert f"https://colab.research.google.com/github/{repo}/blob/main/nbs/{nb}" in text, f"{nb} has no Colab badge"
    linked = set(re.findall(r'\]\(nbs/([^)]+\.ipynb)\)', text))
    assert linked <= set(notebooks) | {'index.ipynb'}, f"links to missing notebooks: {linked - set(notebooks)}"
