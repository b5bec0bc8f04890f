"""The ResNet and SE-ResNet family, by name (torchvision's state_dict keys; the keys and
parameter counts of every model are listed in ``docs/contract.md``).

    model = ns.models.se_resnet20()                       # CIFAR, 274,490 parameters
    model = ns.models.se_resnet50(placement="pre")        # ImageNet, an SE ablation
    model = ns.models.build_model("se_resnet56", se_stages=[1, 2])
    s = ns.models.gate_values(model)                      # SE excitations of the last forward

Layout: ``specs.py`` (the table of depths and widths), ``blocks.py`` (the residual blocks
and the SE placements), ``resnet.py`` (the network and its registered factories),
``registry.py`` (``register_model``, ``build_model``), ``gates.py`` (``gate_values``).
"""
from .blocks import PLACEMENTS, BasicBlock, Bottleneck, ResidualBlock
from .gates import gate_values
from .registry import build_model, model_names, register_model
from .resnet import (ResNet, resnet20, resnet32, resnet50, resnet56, resnet101, resnet110,
                     resnet152, se_resnet20, se_resnet32, se_resnet50, se_resnet56,
                     se_resnet101, se_resnet110, se_resnet152)
from .resnet import (resnet18, resnet34, resnext50_32x4d, resnext101_32x4d, resnext_cifar,
                     se_resnet18, se_resnet34, se_resnext50_32x4d, se_resnext101_32x4d,
                     se_resnext_cifar)
from .senet import SENet, SEBottleneck, senet154
from .mobilenet import (MobileNetV1, mobilenet_v1, mobilenet_v1_cifar, se_mobilenet_v1,
                        se_mobilenet_v1_cifar)
from .vgg import VGG, se_vgg16_bn, se_vgg16_bn_cifar, vgg16_bn, vgg16_bn_cifar
from .shufflenet import (ShuffleNetV1, se_shufflenet_v1, se_shufflenet_v1_cifar, shufflenet_v1,
                         shufflenet_v1_cifar)
from .inception import (BNInception, bn_inception, bn_inception_cifar, se_bn_inception,
                        se_bn_inception_cifar)
from .inception_resnet import (InceptionResNetV2, inception_resnet_v2, inception_resnet_v2_cifar,
                               se_inception_resnet_v2, se_inception_resnet_v2_cifar)

# the names of the families above, in registration order; model_names() also lists any
# registered later
MODEL_NAMES = model_names()

__all__ = ["MODEL_NAMES", "PLACEMENTS", "BasicBlock", "Bottleneck", "ResNet", "ResidualBlock",
           "build_model", "gate_values", "model_names", "register_model",
           "se_resnet20", "se_resnet32", "se_resnet56", "se_resnet110",
           "resnet20", "resnet32", "resnet56", "resnet110",
           "se_resnet50", "se_resnet101", "se_resnet152", "resnet50", "resnet101", "resnet152",
           "se_resnet18", "resnet18", "se_resnet34", "resnet34", "se_resnext50_32x4d",
           "resnext50_32x4d", "se_resnext101_32x4d", "resnext101_32x4d", "se_resnext_cifar",
           "resnext_cifar", "SENet", "SEBottleneck", "senet154",
           "VGG", "se_vgg16_bn", "vgg16_bn", "se_vgg16_bn_cifar", "vgg16_bn_cifar",
           "MobileNetV1", "se_mobilenet_v1", "mobilenet_v1", "se_mobilenet_v1_cifar",
           "mobilenet_v1_cifar", "ShuffleNetV1", "se_shufflenet_v1", "shufflenet_v1",
           "se_shufflenet_v1_cifar", "shufflenet_v1_cifar",
           "BNInception", "se_bn_inception", "bn_inception", "se_bn_inception_cifar",
           "bn_inception_cifar", "InceptionResNetV2", "se_inception_resnet_v2",
           "inception_resnet_v2", "se_inception_resnet_v2_cifar", "inception_resnet_v2_cifar"]
