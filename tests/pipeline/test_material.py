"""The teaching material's small examples, reproduced exactly."""

import torch
from numpy.testing import assert_allclose
from torch import nn

from pipeline.config import RunConfig
from pipeline.training.models import build_mlp


def test_sigmoid_of_6():
    assert round(torch.sigmoid(torch.tensor(6.0)).item(), 4) == 0.9975


def test_softmax_example():
    p = torch.softmax(torch.tensor([4.3, 6.1, 2.3]), dim=-1)
    assert_allclose(p.numpy().round(4), [0.1392, 0.8420, 0.0188])
    assert_allclose(p.sum().item(), 1.0, rtol=1e-6)


def test_one_hot():
    assert nn.functional.one_hot(torch.tensor([0, 1, 2]), 3).tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_cross_entropy_example_float64():
    logits = torch.tensor([[-5.2, 4.6, 0.8]], dtype=torch.float64)
    target = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)  # one-hot class 0
    loss = nn.CrossEntropyLoss()(logits, target).item()
    assert round(loss, 4) == 9.8222
    assert loss == nn.CrossEntropyLoss()(logits, torch.tensor([0])).item()  # index target, same loss


def test_manual_update_equals_one_sgd_step():
    torch.manual_seed(0)
    layer = nn.Linear(6, 1).double()
    manual = nn.Linear(6, 1).double()
    manual.load_state_dict(layer.state_dict())
    before = [p.detach().clone() for p in layer.parameters()]
    x, y = torch.randn(8, 6, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    lr = 0.1
    for model in (layer, manual):
        nn.functional.mse_loss(model(x), y).backward()
    torch.optim.SGD(layer.parameters(), lr=lr).step()
    with torch.no_grad():
        for p in manual.parameters():
            p -= lr * p.grad
    for a, b, start in zip(layer.parameters(), manual.parameters(), before):
        assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-15, atol=1e-15)
        assert not torch.equal(a, start)  # the step really moved the weights


def test_binary_cross_entropy_is_cross_entropy_on_zero_and_logit():
    z = torch.linspace(-30, 30, 121, dtype=torch.float64)
    for label in (0.0, 1.0):
        bce = nn.BCEWithLogitsLoss(reduction="none")(z, torch.full_like(z, label))
        pair = torch.stack([torch.zeros_like(z), z], dim=1)  # logits for class 0 and class 1
        ce = nn.CrossEntropyLoss(reduction="none")(pair, torch.full(z.shape, int(label)))
        assert_allclose(bce.numpy(), ce.numpy(), rtol=1e-12, atol=1e-12)


def test_cross_entropy_on_one_logit_is_zero():
    z = torch.randn(16, 1)
    assert nn.CrossEntropyLoss()(z, torch.zeros(16, dtype=torch.long)).item() == 0.0


def test_material_architecture_is_expressible():
    config = RunConfig(hidden=[4], activation="none")
    mlp = build_mlp(6, config.hidden, config.activation, config.dropout, 1)
    assert [type(m) for m in mlp] == [nn.Linear, nn.Linear]
    assert (mlp[0].in_features, mlp[0].out_features, mlp[1].out_features) == (6, 4, 1)
