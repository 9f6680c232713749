"""Test-wide settings: nothing may reach a model hub, and the session's Ray is the loopback-only one
that every livo command starts."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
# Before any test module imports ray (Ray reads its single-machine mode when first imported) or torch.
from livo.runtime import apply_process_defaults, configure_local_ray  # noqa: E402

apply_process_defaults()
configure_local_ray()
# The session's Ray also hosts the service tests: start it with the settings `livo serve` uses.
from livo.serve.ray_env import apply_serve_environment  # noqa: E402

apply_serve_environment()


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny models run faster on one thread: two threads spin against each other on shared cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_base_and_encoder():  # noqa: ANN201
    """The tiny SD-shaped pipeline (seed 0) and a value encoder copied from its text encoder, then
    perturbed: a trained value encoder differs from the text encoder."""
    import torch
    from diffusers import StableDiffusionPipeline

    from livo.models import ValueEncoder
    from livo.testing import tiny_components

    base = StableDiffusionPipeline(**tiny_components(seed=0))
    base.set_progress_bar_config(disable=True)
    value_encoder = ValueEncoder.from_text_encoder(base.text_encoder)
    with torch.no_grad():
        for parameter in value_encoder.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(9)))
    return base, value_encoder


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201
    """Headless Chromium driven by Selenium, for the service's web page."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole session: starting Ray costs ~10 s, so tests share it.

    Two CPUs, no dashboard, objects spilled under the pytest temp root. Tests that need a fresh
    cluster (e.g. to kill the driver's job) must start a subprocess instead of calling ray.shutdown().
    """
    import ray

    from livo.runtime import start_ray

    if not ray.is_initialized():
        start_ray(None, num_cpus=2)  # retries a start that timed out on a loaded machine
    yield ray
    ray.shutdown()


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    """The docs' examples: every shell and Python block of README.md and docs/, run or not and why."""
    import sys

    module = sys.modules.get("test_docs_examples")
    if module is None or not module.BLOCK_TABLE:
        return
    terminalreporter.section("documentation examples")
    terminalreporter.write_line(module.format_block_table(module.BLOCK_TABLE))
