import pytest
import torch

from alkit.models import ReferenceCNN, count_parameters, resolve_device, resolve_precision, summary
from alkit.models.seeded import SeededDropout, init_weights, keep_mask, same_device, set_dropout_generator
from alkit.errors import ConfigError


def test_parameter_counts_match_keras_model() -> None:
    counts = count_parameters(ReferenceCNN((32, 32, 3), 10))
    assert counts["trainable"] == 3_349_418
    assert counts["non_trainable"] == 1_408


def test_layer_order_and_output_shapes() -> None:
    model = ReferenceCNN((28, 28, 1), 10).eval()
    kinds = [type(m).__name__ for m in model.modules() if not list(m.children())]
    assert kinds == ["Conv2d", "ReLU", "BatchNorm2d", "Conv2d", "ReLU", "BatchNorm2d", "MaxPool2d", "SeededDropout",
                     "Conv2d", "ReLU", "BatchNorm2d", "Conv2d", "ReLU", "BatchNorm2d", "SeededDropout",
                     "Flatten", "Linear", "ReLU", "BatchNorm1d", "SeededDropout", "Linear"]
    assert [m.p for m in model.modules() if isinstance(m, SeededDropout)] == [0.25, 0.25, 0.5]
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_summary_text() -> None:
    text = summary(ReferenceCNN((32, 32, 3), 10), (32, 32, 3))
    assert "Trainable params: 3,349,418" in text and "Non-trainable params: 1,408" in text
    assert "(None, 30, 30, 32)" in text and "(None, 6400)" in text


@pytest.mark.parametrize("shape", [(8, 8, 1), (13, 13, 1), (32, 13, 3)])
def test_too_small_input(shape) -> None:
    with pytest.raises(ValueError, match="needs at least 14x14"):
        ReferenceCNN(shape, 10)


def test_smallest_input_builds_and_runs() -> None:
    assert ReferenceCNN((14, 14, 1), 3).eval()(torch.zeros(2, 1, 14, 14)).shape == (2, 3)


@pytest.mark.parametrize("scheme", ["torch", "glorot"])
def test_init_is_reproducible_from_generator(scheme: str) -> None:
    a, b = ReferenceCNN((28, 28, 1), 10), ReferenceCNN((28, 28, 1), 10)
    torch.manual_seed(0)
    init_weights(a, torch.Generator().manual_seed(5), scheme)
    torch.manual_seed(1)
    init_weights(b, torch.Generator().manual_seed(5), scheme)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    init_weights(b, torch.Generator().manual_seed(6), scheme)
    assert not torch.equal(a.classifier[1].weight, b.classifier[1].weight)


def test_init_schemes_draw_from_their_own_ranges() -> None:
    model = ReferenceCNN((28, 28, 1), 10)
    dense, conv = model.classifier[1], model.features[0]
    init_weights(model, torch.Generator().manual_seed(0), "torch")
    for layer, fan_in in ((dense, 4096), (conv, 9)):
        bound = 1 / fan_in ** 0.5
        assert 0.95 * bound < float(layer.weight.detach().abs().max()) <= bound
        assert float(layer.bias.detach().abs().max()) <= bound
    assert float(dense.bias.detach().abs().max()) > 0.95 / 4096 ** 0.5
    init_weights(model, torch.Generator().manual_seed(0), "glorot")
    limit = (6 / (4096 + 512)) ** 0.5
    assert 0.95 * limit < float(dense.weight.detach().abs().max()) <= limit
    assert float(dense.bias.detach().abs().sum()) == 0.0
    with pytest.raises(ValueError, match="unknown"):
        init_weights(model, torch.Generator(), "he")


def test_seeded_dropout_uses_its_generator_not_global_rng() -> None:
    drop = SeededDropout(0.5).train()
    x = torch.ones(1000)
    set_dropout_generator(drop, torch.Generator().manual_seed(1))
    first = drop(x)
    torch.manual_seed(999)
    set_dropout_generator(drop, torch.Generator().manual_seed(1))
    assert torch.equal(first, drop(x))
    assert set(first.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(drop.eval()(x), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_keep_masks_keep_each_entry_with_probability_keep_in_the_inputs_dtype_whatever_its_layout(dtype) -> None:
    x = torch.ones(50, 32, 25, 25, dtype=dtype).contiguous(memory_format=torch.channels_last)
    mask = keep_mask(x, 0.75, torch.Generator().manual_seed(0))
    assert mask.dtype == dtype and mask.stride() == x.stride()
    assert torch.equal(mask, keep_mask(x.contiguous(), 0.75, torch.Generator().manual_seed(0)))
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert abs(float(mask.float().mean()) - 0.75) < 0.002  # 1,000,000 draws: the standard error is 0.0004
    per_channel = mask.float().mean(dim=(0, 2, 3))
    assert float(per_channel.min()) > 0.73 and float(per_channel.max()) < 0.77
    again = keep_mask(x, 0.75, torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)
    assert not torch.equal(mask, keep_mask(x, 0.75, torch.Generator().manual_seed(1)))


def test_seeded_dropout_scales_kept_entries_by_one_over_keep_in_the_inputs_dtype() -> None:
    x = torch.full((4000,), 0.078125, dtype=torch.bfloat16)  # x / 0.75 rounds differently from x * bf16(1 / 0.75)
    out = SeededDropout(0.25).train()
    set_dropout_generator(out, torch.Generator().manual_seed(2))
    y = out(x)
    assert y.dtype == torch.bfloat16
    assert set(y.unique().tolist()) == {0.0, float(torch.tensor(0.078125 / 0.75).to(torch.bfloat16))}


def test_device_and_precision_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cpu")) in ("fp32", "bf16")
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"
    assert resolve_precision("bf16", torch.device("cuda")) == "bf16"
    with pytest.raises(ConfigError, match="precision 'fp16' is unknown"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(ConfigError, match="device 'tpu' is unknown"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_same_device_treats_a_missing_index_as_the_current_device() -> None:
    cuda, cuda0, cuda1, cpu = (torch.device(d) for d in ("cuda", "cuda:0", "cuda:1", "cpu"))
    assert same_device(cuda, cuda0) and same_device(cuda0, cuda) and same_device(cpu, torch.device("cpu"))
    assert not same_device(cuda0, cuda1) and not same_device(cpu, cuda0)
