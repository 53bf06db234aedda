"""Issue 32 diagnostic: which classes does 12_own_model's teacher give to images off the data, against one package teacher?

    OMP_NUM_THREADS=1 python research/own_teacher_classes.py
"""
import torch
import torch.nn as nn

from dpsd_nb.data import load_dataset
from dpsd_nb.models import Generator, accuracy, fit_classifier
from dpsd_nb.teachers import TeacherConfig, get_teachers


def my_cnn(channels=1, classes=10):
    "12_own_model's teacher: two 3x3 convolutions with batch norm, global average pooling, dropout."
    return nn.Sequential(nn.Conv2d(channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, classes))


def main():
    torch.set_num_threads(1)
    data = load_dataset('digits')
    torch.manual_seed(0)
    own = fit_classifier(my_cnn(), data.train, epochs=20, lr=3e-3).eval()
    package, _ = get_teachers(data, TeacherConfig(teachers=1, epochs=100), progress=False)
    print(f"test accuracy: own teacher {accuracy(own, data.test):.3f}")
    uniform = torch.rand(2000, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        generated = Generator(data.info, 64, conditional=True)(torch.randn(2000, 64), torch.arange(2000) % 10)
        for name, x in (('uniform images', uniform), ('an untrained generator', generated)):
            mine, theirs = own(x).argmax(1), package(x).reshape(-1, x.shape[0], 10)[0].argmax(1)
            print(f"{name}: own teacher's classes {torch.bincount(mine, minlength=10).tolist()}, "
                  f"package teacher's {torch.bincount(theirs, minlength=10).tolist()}")


if __name__ == '__main__':
    main()
