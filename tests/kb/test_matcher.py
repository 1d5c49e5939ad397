"""The matcher names the root cause in noisy logs, not the surface message."""

from __future__ import annotations

from opsconsole.kb import LogMatcher, load_kb, match_log

KB = load_kb()

TRACE = """Traceback (most recent call last):
  File "train.py", line 88, in <module>
    main()
  File "train.py", line 61, in main
    loss = model(**batch).loss
"""


def noise(n: int, tag: str = "step") -> str:
    return "".join(f"INFO {tag} {i}: loss=0.{i % 97:02d} lr=2e-05 grad_norm=1.{i % 9}\n" for i in range(n))


def top(text: str | bytes, n: int = 3) -> list[str]:
    return [d.id for d in match_log(text, kb=KB, top=n).matches]


def test_chained_exception_keeps_the_root_cause() -> None:
    log = (noise(30) + TRACE
           + "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 4.00 GiB. GPU 0 has a total capacity of 23.6 GiB\n"
           + "\nThe above exception was the direct cause of the following exception:\n\n" + TRACE
           + "RuntimeError: training step failed, see above\n")
    result = match_log(log, kb=KB)
    assert result.matches[0].category == "cuda_oom"
    assert any("CUDA out of memory" in ev.text for ev in result.matches[0].evidence)


def test_oom_reported_as_nccl_error_is_an_oom() -> None:
    log = (noise(20)
           + "node1:311:402 [0] NCCL INFO Channel 00/02 :    0   1\n" * 5
           + "node1:311:402 [0] enqueue.cc:1085 NCCL WARN Cuda failure 'out of memory'\n"
           + "node1:311:402 [0] NCCL INFO init.cc:1350 -> 1\n" + TRACE
           + "torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled cuda error, NCCL version 2.21.5\n"
           + "ncclUnhandledCudaError: Call to CUDA function failed.\n")
    ids = top(log)
    assert KB.get(ids[0]).category == "cuda_oom", ids


def test_earlier_oom_explains_a_later_unspecified_launch_failure() -> None:
    log = ("| WARNING: ran out of memory with exception: CUDA out of memory. Tried to allocate 1.2 GiB; skipping batch\n"
           + noise(200) + TRACE + "RuntimeError: CUDA error: unspecified launch failure\n")
    assert KB.get(top(log)[0]).category == "cuda_oom"


def test_cuda_unknown_error_is_a_driver_problem() -> None:
    log = (TRACE + "  File \"/venv/lib/python3.10/site-packages/torch/cuda/__init__.py\", line 302, in _lazy_init\n"
           "    torch._C._cuda_init()\nRuntimeError: CUDA unknown error - this may be due to an incorrectly set up "
           "environment, e.g. changing env variable CUDA_VISIBLE_DEVICES after program start. Setting the available devices to be zero.\n")
    assert top(log)[0] == "cuda-unknown-error-driver-state"


def test_specific_sub_cause_beats_the_generic_one() -> None:
    vae = (TRACE + '  File "/venv/lib/python3.10/site-packages/diffusers/models/autoencoders/autoencoder_kl.py", line 304, in _decode\n'
           "    dec = self.decoder(z)\n"
           "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 8.00 GiB. GPU 0 has a total capacity of 23.6 GiB\n")
    assert top(vae)[0] == "cuda-oom-sdxl-vae-decode"
    plain = TRACE + "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 8.00 GiB. GPU 0 has a total capacity of 23.6 GiB\n"
    assert top(plain)[0] == "cuda-oom-batch-too-large"
    assert "cuda-oom-sdxl-vae-decode" not in top(plain, 5)


def test_final_exception_outranks_an_early_warning() -> None:
    log = ("UserWarning: It is strongly recommended to train Gemma2 models with the `eager` attention implementation instead of `sdpa`.\n"
           + noise(300) + TRACE
           + "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!\n")
    ids = top(log)
    assert ids[0] == "device-mismatch" and "gemma2-eager-attention" in ids


def test_progress_bars_ansi_and_repeated_tracebacks() -> None:
    bar = "".join(f"\r  {p}%|{'█' * (p // 10)}| {p}/100 [00:{p:02d}<00:10, 9.1it/s]" for p in range(0, 100, 7))
    ranks = "".join(f"[rank{r}]: \x1b[31mRuntimeError: CUDA error: an illegal memory access was encountered\x1b[0m\n" for r in range(8))
    log = noise(10) + bar + "\n" + ranks * 3
    result = match_log(log, kb=KB)
    best = result.matches[0]
    assert best.id == "illegal-memory-access"
    assert len(best.evidence) <= 8
    assert all("\x1b" not in ev.text for ev in best.evidence)
    assert best.evidence[0].line == 12  # physical line numbers: 10 noise lines, the bar, then the ranks


def test_error_after_a_carriage_return_on_the_same_line() -> None:
    log = noise(3) + "Steps:  40%|████      | 4/10 [00:02<00:03]\rDataLoader worker (pid 4242) is killed by signal: Bus error. It is possible that dataloader's workers are out of shared memory. Please try to raise your shared memory limit.\n"
    result = match_log(log, kb=KB)
    assert result.matches[0].id == "dataloader-shm"
    assert result.matches[0].evidence[0].line == 4
    assert result.matches[0].evidence[0].text.startswith("DataLoader worker")


def test_excludes_demote_an_entry() -> None:
    shm = "RuntimeError: unable to write to file </torch_31_2281>: No space left on device (28)\n"
    assert KB.get(top(shm)[0]).category == "dataloader_workers"


def test_nothing_matches_in_clean_noise() -> None:
    result = match_log(noise(500), kb=KB)
    assert result.matches == [] and result.lines_scanned == 500


def test_streaming_in_any_chunking_equals_whole() -> None:
    log = (noise(50) + TRACE + "RuntimeError: CUDA error: no kernel image is available for execution on the device\n"
           + noise(5) + "NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, GPU has fallen off the bus.\n").encode()
    whole = match_log(log, kb=KB, top=5)
    for size in (1, 7, 64, 1000):
        matcher = LogMatcher(KB)
        for start in range(0, len(log), size):
            matcher.feed(log[start : start + size])
        assert matcher.result(5) == whole, size


def test_live_stream_result_between_feeds() -> None:
    matcher = LogMatcher(KB)
    matcher.feed(noise(20))
    assert matcher.result().matches == []
    matcher.feed("OSError: [Errno 28] No space left on d")  # a line still being written
    matcher.feed("evice: '/ckpt/step-900/model.safetensors'\n")
    result = matcher.result()
    assert result.matches[0].id == "disk-space-full" and result.lines_scanned == 21
    assert result.matches[0].evidence[0].line == 21


def test_iterable_of_lines_and_path(tmp_path) -> None:
    lines = ["step 1", "ImportError: cannot import name 'cached_download' from 'huggingface_hub'"]
    assert top(lines)[0] == "diffusers-hub-api-moved"
    path = tmp_path / "run.log"
    path.write_text("\n".join(lines) + "\n")
    assert top(path)[0] == "diffusers-hub-api-moved"
    with path.open() as handle:
        assert top(handle)[0] == "diffusers-hub-api-moved"


def test_live_partial_line_evidence_is_replaced_by_the_complete_line() -> None:
    matcher = LogMatcher(KB)
    matcher.feed("RuntimeError: CUDA error: an illegal memory access was encountered")
    assert matcher.result().matches[0].evidence[0].text.endswith("was encountered")
    matcher.feed(" (in kernel fused_attn_fwd)\n")
    evidence = matcher.result().matches[0].evidence
    assert len(evidence) == 1 and evidence[0].text.endswith("(in kernel fused_attn_fwd)")


def test_evidence_text_has_no_control_characters() -> None:
    log = b"\x00\x07RuntimeError: CUDA error: an illegal memory access was encountered\x08\n"
    text = match_log(log, kb=KB).matches[0].evidence[0].text
    assert text.startswith("RuntimeError") and text.isprintable()


NOTEBOOK_CUDA_CALL = """AssertionError                            Traceback (most recent call last)
<ipython-input-4-1a2b3c> in <module>
----> 12 model = Net().cuda()
     13 opt = torch.optim.SGD(model.parameters(), lr=0.1)
"""


def test_light_signals_on_two_lines_diagnose_a_cut_off_traceback() -> None:
    """A notebook traceback pasted without its message still names the likely cause."""
    assert top(noise(10) + NOTEBOOK_CUDA_CALL)[:1] == ["torch-cpu-only"]


def test_one_light_signal_alone_is_not_a_diagnosis() -> None:
    assert top(noise(10) + "----> 12 model = Net().cuda()\n") == []
    assert top(noise(10) + "AssertionError                            Traceback (most recent call last)\n") == []


def test_device_or_dtype_decided_by_which_part_of_the_type_differs() -> None:
    dtype = "RuntimeError: Input type (torch.cuda.FloatTensor) and weight type (torch.cuda.HalfTensor) should be the same\n"
    device = "RuntimeError: Input type (torch.cuda.FloatTensor) and weight type (torch.FloatTensor) should be the same\n"
    assert match_log(TRACE + dtype, kb=KB).matches[0].category == "dtype_mismatch"
    assert match_log(TRACE + device, kb=KB).matches[0].category == "device_mismatch"
