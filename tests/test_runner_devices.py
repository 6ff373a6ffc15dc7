"""The memory cap and health check on a real GPU (run by bench/gpu/check.sh; skipped without one).

In CI the same code runs against the torch.cuda stand-ins (tests/test_standin_cuda_branches.py); this is the
check that the stand-ins told the truth.
"""

from __future__ import annotations

import pytest
import torch

from mmserve.devices import cap_gpu_memory, check_device, resolve_device


@pytest.mark.gpu
def test_the_memory_cap_holds_torch_to_its_share_on_a_real_gpu():
    device = resolve_device("auto")
    assert device == "cuda"
    total = torch.cuda.get_device_properties(0).total_memory
    try:
        assert cap_gpu_memory(0.25, device) == 0.25
        kept = torch.empty(int(total * 0.1), dtype=torch.uint8, device=device)
        with pytest.raises(torch.OutOfMemoryError):
            torch.empty(int(total * 0.3), dtype=torch.uint8, device=device)
        del kept
        check_device(device)
        check_device("cuda:0")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)  # the other GPU tests in this process
        torch.cuda.empty_cache()
