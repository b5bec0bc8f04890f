"""The ResNet and SE-ResNet family (torchvision's state_dict keys, SPEC §2).

    model = ns.models.se_resnet20()                       # CIFAR, 274,490 parameters
    model = ns.models.se_resnet50(placement="pre")        # ImageNet, an SE ablation
    model = ns.models.build_model("se_resnet56", se_stages=[1, 2])
    s = ns.models.gate_values(model)                      # SE excitations of the last forward
"""
from .resnet import (FACTORIES, MODEL_NAMES, PLACEMENTS, BasicBlock, Bottleneck, ResNet,
                     ResidualBlock, build_model, gate_values)

se_resnet20 = FACTORIES["se_resnet20"]
se_resnet32 = FACTORIES["se_resnet32"]
se_resnet56 = FACTORIES["se_resnet56"]
se_resnet110 = FACTORIES["se_resnet110"]
resnet20 = FACTORIES["resnet20"]
resnet32 = FACTORIES["resnet32"]
resnet56 = FACTORIES["resnet56"]
resnet110 = FACTORIES["resnet110"]
se_resnet50 = FACTORIES["se_resnet50"]
se_resnet101 = FACTORIES["se_resnet101"]
se_resnet152 = FACTORIES["se_resnet152"]
resnet50 = FACTORIES["resnet50"]
resnet101 = FACTORIES["resnet101"]
resnet152 = FACTORIES["resnet152"]

__all__ = ["MODEL_NAMES", "PLACEMENTS", "BasicBlock", "Bottleneck", "ResNet", "ResidualBlock",
           "build_model", "gate_values",
           "se_resnet20", "se_resnet32", "se_resnet56", "se_resnet110",
           "resnet20", "resnet32", "resnet56", "resnet110",
           "se_resnet50", "se_resnet101", "se_resnet152", "resnet50", "resnet101", "resnet152"]
