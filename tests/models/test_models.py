"""Models: the shipped ImageNet weights, uniform construction by name, deterministic training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from a2lc.data.sample import Sample
from a2lc.errors import UnknownNameError
from a2lc.models.config import ModelConfig
from a2lc.models.efficientnet_lite import (
    EfficientNetLite0Encoder,
    EfficientNetLiteEncoder,
    pretrained_weights_path,
)
from a2lc.models.runner import ModelRunner
from a2lc.models.training import (
    FeatureCache,
    TrainConfig,
    image_tensor,
    load_checkpoint,
    save_checkpoint,
    train,
)
from a2lc.models.zoo import MODELS, build_model


def test_lite0_loads_every_encoder_tensor_from_the_wheel() -> None:
    encoder = EfficientNetLite0Encoder()
    encoder.load_imagenet()
    state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    for name, tensor in encoder.state_dict().items():
        torch.testing.assert_close(tensor, state[name])


def test_lite0_features_have_strides_8_16_32() -> None:
    model = build_model(ModelConfig(num_classes=5, weights="none"))
    with torch.no_grad():
        features = model.features(torch.rand(1, 3, 64, 96))
        logits = model(torch.rand(2, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in features] == [(40, 8, 12), (112, 4, 6), (320, 2, 3)]
    assert logits.shape == (2, 5, 64, 96)


def test_lite2_loads_every_encoder_tensor_from_its_wheel() -> None:
    encoder = EfficientNetLiteEncoder("lite2")
    encoder.load_imagenet()
    state = torch.load(pretrained_weights_path("lite2"), map_location="cpu", weights_only=True)
    for name, tensor in encoder.state_dict().items():
        torch.testing.assert_close(tensor, state[name])
    # every block of the shipped network is in the encoder (only the classifier is not)
    assert {k for k in state if k.startswith("_blocks.")} <= set(encoder.state_dict())


def test_lite2_features_have_strides_8_16_32() -> None:
    model = build_model(ModelConfig(name="efficientnet-lite2", num_classes=5, weights="none"))
    with torch.no_grad():
        features = model.features(torch.rand(1, 3, 64, 96))
        logits = model(torch.rand(2, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in features] == [(48, 8, 12), (120, 4, 6), (352, 2, 3)]
    assert logits.shape == (2, 5, 64, 96)


def test_tiny_deeplab_builds_from_config() -> None:
    config = ModelConfig(
        name="deeplabv3plus-resnet101",
        num_classes=4,
        weights="none",
        encoder_layers=(1, 1, 1, 1),
        encoder_width=8,
        head_width=4,
    )
    model = build_model(config)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 4, 64, 64)
    with pytest.raises(ValueError, match="no bundled ImageNet weights"):
        build_model(ModelConfig(name="deeplabv3plus-resnet101", num_classes=4))


def test_model_registry() -> None:
    assert MODELS.names() == ["deeplabv3plus-resnet101", "efficientnet-lite0", "efficientnet-lite2"]
    with pytest.raises(
        UnknownNameError,
        match="valid names: deeplabv3plus-resnet101, efficientnet-lite0, efficientnet-lite2",
    ):
        build_model(ModelConfig(name="unet", num_classes=3))  # type: ignore[arg-type]


def _tiny_problem(
    tmp_path: Path,
) -> tuple[dict[str, Sample], dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    samples, images, labels = {}, {}, {}
    for i in range(4):
        image_id = f"im{i}"
        labels[image_id] = (np.arange(32)[:, None] // 16 + np.zeros(48, int)[None]).astype(np.uint8)
        images[image_id] = (
            labels[image_id][..., None] * 120 + rng.integers(0, 30, (32, 48, 3))
        ).astype(np.uint8)
        samples[image_id] = Sample(image_id, tmp_path / f"{image_id}.png", None, 48, 32)
    return samples, images, labels


@pytest.mark.parametrize("frozen", [True, False])
def test_training_is_deterministic_and_learns(tmp_path: Path, frozen: bool) -> None:
    samples, images, labels = _tiny_problem(tmp_path)
    config = TrainConfig(epochs=4, batch_size=2, lr=5e-3, loss_stride=2)
    weights = []
    for attempt in range(2):
        torch.manual_seed(0)
        model = build_model(ModelConfig(num_classes=2, weights="none"))
        cache = (
            FeatureCache(
                tmp_path / f"cache{attempt}", model, images.__getitem__, device=torch.device("cpu")
            )
            if frozen
            else None
        )
        history = train(
            model,
            list(samples),
            shapes={i: s.shape for i, s in samples.items()},
            load_labels=labels.__getitem__,
            load_image=images.__getitem__,
            config=config,
            cache=cache,
            show_progress=False,
        )
        weights.append([p.detach().clone() for p in model.head.parameters()])
        assert history[-1] < history[0]
        if frozen:
            assert cache is not None
            assert cache.path("im0").parent == tmp_path / f"cache{attempt}"
            cached = np.load(cache.path("im0"), mmap_mode="r")
            assert cached.dtype == np.float16
            assert cached.ndim == 1
    for a, b in zip(*weights, strict=True):
        torch.testing.assert_close(a, b)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = build_model(ModelConfig(num_classes=3, weights="none"))
    save_checkpoint(tmp_path / "w.pt", model, trainable_only=True)
    other = build_model(ModelConfig(num_classes=3, weights="none"))
    load_checkpoint(tmp_path / "w.pt", other, trainable_only=True)
    for a, b in zip(
        model.head.state_dict().values(), other.head.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b)


def test_runner_saves_config_beside_checkpoint(tmp_path: Path) -> None:
    samples, images, labels = _tiny_problem(tmp_path)
    runner = ModelRunner(
        model_config=ModelConfig(num_classes=2, weights="none"),
        train_config=TrainConfig(epochs=1, batch_size=2),
        samples=samples,
        cache_dir=tmp_path / "cache",
        show_progress=False,
    )
    runner.load_image = images.__getitem__  # type: ignore[method-assign]
    model, _ = runner.fit(list(samples), labels.__getitem__, seed=3)
    runner.save(model, tmp_path / "ckpt", extra={"round": 0})
    config = (tmp_path / "ckpt" / "config.json").read_text()
    assert '"num_classes": 2' in config
    assert '"round": 0' in config
    probs = runner.predict(runner.load(tmp_path / "ckpt", seed=3), "im0")
    assert probs.shape == (2, 32, 48)
    np.testing.assert_allclose(probs.sum(axis=0), 1, rtol=1e-5)


def test_deeplab_loads_encoder_weights_from_a_local_file(tmp_path: Path) -> None:
    from a2lc.models.deeplab import ResNetEncoder

    layers, width = (1, 1, 1, 1), 8
    source = ResNetEncoder(layers=layers, base_width=width)
    state = {**source.state_dict(), "fc.weight": torch.zeros(10, 32), "fc.bias": torch.zeros(10)}
    torch.save(state, tmp_path / "resnet.pth")  # torchvision-style, classifier included
    config = ModelConfig(
        name="deeplabv3plus-resnet101",
        num_classes=3,
        weights=str(tmp_path / "resnet.pth"),
        encoder_layers=layers,
        encoder_width=width,
        head_width=4,
    )
    model = build_model(config)
    for name, tensor in source.state_dict().items():
        torch.testing.assert_close(model.encoder.state_dict()[name], tensor)


def _cache(folder: Path, images: dict[str, np.ndarray]) -> tuple[FeatureCache, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=2, weights="none"))
    return FeatureCache(folder, model, images.__getitem__, device=torch.device("cpu")), model


def _train_once(
    tmp_path: Path, cache_folder: str, *, budget: int, reads: list[str] | None = None
) -> list[torch.Tensor]:
    samples, images, labels = _tiny_problem(tmp_path)
    cache, model = _cache(tmp_path / cache_folder, images)
    cache.fill(list(samples), show_progress=False)
    held = cache.hold(list(samples), memory_budget=budget)
    assert held == (budget > 0)
    if reads is not None:
        original = np.load

        def counting_load(path: object, *args: object, **kwargs: object) -> object:
            reads.append(str(path))
            return original(path, *args, **kwargs)  # type: ignore[call-overload]

        np.load, saved = counting_load, np.load  # type: ignore[assignment]
    try:
        train(
            model,  # type: ignore[arg-type]
            list(samples),
            shapes={i: s.shape for i, s in samples.items()},
            load_labels=labels.__getitem__,
            load_image=images.__getitem__,
            config=TrainConfig(epochs=3, batch_size=2, lr=5e-3, loss_stride=2),
            cache=cache,
            show_progress=False,
        )
    finally:
        if reads is not None:
            np.load = saved  # type: ignore[assignment]
    return [p.detach().clone() for p in model.head.parameters()]  # type: ignore[union-attr]


def test_held_and_memory_mapped_features_train_the_same_model(tmp_path: Path) -> None:
    held_reads: list[str] = []
    mapped_reads: list[str] = []
    held = _train_once(tmp_path, "held", budget=1 << 30, reads=held_reads)
    mapped = _train_once(tmp_path, "mapped", budget=0, reads=mapped_reads)
    for a, b in zip(held, mapped, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert held_reads == []  # every epoch from memory
    assert len(mapped_reads) == 3 * 4  # memory-mapped per epoch and image, nothing held


def test_cache_files_follow_the_image_content(tmp_path: Path) -> None:
    from PIL import Image

    samples, images, _ = _tiny_problem(tmp_path)
    for image_id, image in images.items():
        Image.fromarray(image).save(samples[image_id].image_path)
    runner = ModelRunner(
        model_config=ModelConfig(num_classes=2, weights="none"),
        train_config=TrainConfig(epochs=1, batch_size=2),
        samples=samples,
        cache_dir=tmp_path / "cache",
        show_progress=False,
    )
    model = runner.build(seed=0)
    cache = runner.cache_for(model)
    assert cache is not None
    first = cache.path("im0")
    cache.ensure("im0")
    features = cache.get("im0", shape=(32, 48))
    # The image is replaced under the same id (a shared cache, an edited dataset).
    Image.fromarray(255 - images["im0"]).save(samples["im0"].image_path)
    other = ModelRunner(
        model_config=ModelConfig(num_classes=2, weights="none"),
        train_config=TrainConfig(epochs=1, batch_size=2),
        samples=samples,
        cache_dir=tmp_path / "cache",
        show_progress=False,
    )
    again = other.cache_for(other.build(seed=0))
    assert again is not None
    assert again.path("im0") != first
    fresh = again.get("im0", shape=(32, 48))
    assert any(not torch.equal(a, b) for a, b in zip(features, fresh, strict=True))


def test_a_cache_file_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    _, images, _ = _tiny_problem(tmp_path)
    cache, _ = _cache(tmp_path / "c", images)
    (tmp_path / "c").mkdir()
    np.save(cache.path("im0"), np.zeros(7, dtype=np.float16))
    with pytest.raises(ValueError, match="delete the cache folder"):
        cache.get("im0", shape=(32, 48))


def test_training_labels_are_held_as_uint8() -> None:
    from a2lc.models.training import _held_labels

    labels = np.arange(64, dtype=np.uint8).reshape(8, 8)
    held = _held_labels(["a"], lambda _: labels, 2, {"a": (8, 8)})
    assert held["a"].dtype == torch.uint8
    assert held["a"].tolist() == labels[1::2, 1::2].tolist()


def test_training_labels_are_decoded_up_front_into_one_block_per_size() -> None:
    from a2lc.models.training import _held_labels

    rng = np.random.default_rng(0)
    maps = {
        "a": rng.integers(0, 5, (9, 12), dtype=np.uint8),
        "b": rng.integers(0, 5, (9, 12), dtype=np.uint8),
        "c": rng.integers(0, 5, (5, 7), dtype=np.uint8),
    }
    decoded: list[str] = []

    def load(image_id: str) -> np.ndarray:
        decoded.append(image_id)
        return maps[image_id]

    held = _held_labels(["a", "c", "b"], load, 4, {k: v.shape for k, v in maps.items()})
    assert sorted(decoded) == ["a", "b", "c"]  # each once, before any batch
    for image_id, labels in maps.items():
        assert held[image_id].dtype == torch.uint8
        assert held[image_id].tolist() == labels[2::4, 2::4].tolist()
    # "a" and "b" (same size) are consecutive rows of one allocation.
    step = held["b"].untyped_storage().data_ptr() - held["a"].untyped_storage().data_ptr()
    assert step == held["a"].numel()


def test_paper_cityscapes_probabilities_come_from_a_shrunk_padded_view() -> None:
    import torch.nn.functional as F

    from a2lc.models.training import paper_cityscapes_probabilities

    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=3, weights="none")).eval()
    with torch.no_grad():
        model.head.classify.weight.mul_(100.0)  # type: ignore[operator]  # confident, varied outputs
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3)).astype(np.uint8)
    probs = paper_cityscapes_probabilities(model, image, crop=64)
    assert probs.shape == (3, 40, 56)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, rtol=1e-5)
    with torch.no_grad():
        x = image_tensor(image)[None]
        small = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        padded = torch.zeros(1, 3, 64, 64)
        padded[..., :32, :32] = small
        want = F.interpolate(
            model(padded).softmax(dim=1)[..., :32, :32],
            size=(40, 56),
            mode="bilinear",
            align_corners=False,
        )[0].numpy()
    np.testing.assert_allclose(probs, want, rtol=1e-5, atol=1e-6)
    full = model(image_tensor(image)[None]).softmax(dim=1)[0].detach().numpy()
    assert np.abs(full - probs).max() > 1e-4  # not the label-resolution ones (float noise: 1e-7)


def test_paper_cityscapes_preset_selects_the_quirk() -> None:
    from a2lc.cli import _parser, run_config_from_args

    args = _parser().parse_args(["run", "-w", "w", "--preset", "paper-cityscapes"])
    assert run_config_from_args(args).probabilities == "paper-cityscapes"
    args = _parser().parse_args(["run", "-w", "w", "--preset", "paper-voc"])
    assert run_config_from_args(args).probabilities == "label"
    assert run_config_from_args(_parser().parse_args(["run", "-w", "w"])).probabilities == "label"
