"""Real error messages (as the libraries print them) map to the right root cause.

Each case is wrapped in typical noise: progress output before, a traceback
frame, and launcher chatter after, so the ranking is exercised, not just the regex.
"""

from __future__ import annotations

import pytest

from opsconsole.kb import load_kb, match_log

KB = load_kb()

CASES = [
    ("cuda_oom", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 7.78 GiB of which 3.25 MiB is free."),
    ("cuda_oom", "!!! Exception during processing !!! Allocation on device 0 would exceed allowed memory. (out of memory)\nCurrently allocated     : 22.1 GiB"),
    ("cuda_oom", "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    ("cpu_ram_oom", "[2024-06-01 10:00:01] torch.distributed.elastic.multiprocessing.api: ERROR failed (exitcode: -9) local_rank: 0 (pid: 4121) of binary: /usr/bin/python3"),
    ("cpu_ram_oom", "[2023-04-14 13:11:27,885] [ERROR] [launch.py:434:sigkill_handler] ['/usr/bin/python3', '-u', 'main.py'] exits with return code = -9"),
    ("cpu_ram_oom", "Loading checkpoint shards:  88%|########  | 7/8 [00:12<00:01,  1.84s/it][1]    14875 killed     python main.py"),
    ("nccl_error", "[rank0]: RuntimeError: NCCL Error 2: unhandled system error (run with NCCL_DEBUG=INFO for details)"),
    ("gpu_hardware_xid", "[   49.261458] NVRM: GPU at 0000:01:00.0 has fallen off the bus."),
    ("version_incompat", "TypeError: PeftConfig.__init__() got an unexpected keyword argument 'dtype'"),
    ("dtype_mismatch", "RuntimeError: Input type (CUDAFloatType) and weight type (CUDAHalfType) should be the same"),
    ("cudnn_error", "Could not load library cudnn_ops_infer64_8.dll. Error code 126\nPlease make sure cudnn_ops_infer64_8.dll is in your library path!"),
    ("gpu_hardware_xid", "NVRM: Xid (PCI:0000:0a:00): 31, pid=13332, name=python, Ch 00000010, intr 00000000. MMU Fault: ENGINE CE2 HUBCLIENT_CE0 faulted\nNVRM: Xid (PCI:0000:0a:00): 62, pid='<unknown>', name=<unknown>, 2023b230 20238a3a 2023e8b6"),
    ("driver_library_mismatch", "terminate called after throwing an instance of 'std::runtime_error'\n  what():  Error (gpu_burn-drv.cpp:298): system not yet initialized"),
    ("dtype_mismatch", "RuntimeError: Expected tensor for argument #1 'indices' to have scalar type Long; but got torch.cuda.IntTensor instead (while checking arguments for embedding)"),
    ("dtype_mismatch", "RuntimeError: Expected object of scalar type Long but got scalar type Float for argument #3 'index'"),
    ("nan_inf", "FloatingPointError: Loss became infinite or NaN at iteration=2137!\nloss_dict = {'loss_cls': tensor(nan, device='cuda:0', grad_fn=<NllLossBackward>)}"),
    ("bitsandbytes", "bin F:\\venv\\lib\\site-packages\\bitsandbytes\\libbitsandbytes_cuda118.dll\nError named symbol not found at line 74 in file D:\\a\\bitsandbytes\\csrc\\ops.cu"),
    ("dtype_mismatch", "RuntimeError: CUDA error: CUBLAS_STATUS_NOT_SUPPORTED when calling `cublasGemmStridedBatchedEx(handle, opa, opb, (int)m, (int)n, (int)k, (void*)&falpha, a, CUDA_R_16BF, (int)lda, stridea, b, CUDA_R_16BF, (int)ldb)`"),
    ("cuda_not_visible", "[188497.595099] NVRM: No NVIDIA graphics adapter probed!\n[188549.976351] NVRM: The NVIDIA probe routine was not called for 3 device(s)."),
    ("nccl_error", "[rank1]: torch.distributed.DistBackendError: [1] is setting up NCCL communicator and retrieving ncclUniqueId from [0] via c10d key-value store by key '0', but store->get('0') got error: Socket Timeout"),
    ("device_mismatch", "RuntimeError: Tensor on device cuda:0 is not on the expected device meta!"),
    ("driver_library_mismatch", "Cuda failure: 222 the provided PTX was compiled with an unsupported toolchain.\n/home/ubuntu/ios/src/ios/ios_runtime.cu:1332\nAborting..."),
    ("no_kernel_image", "RuntimeError: nvrtc: error: invalid value for --gpu-architecture (-arch)\n\nnvrtc compilation failed:"),
    ("torch_cpu_only", "PyTorch version: 2.2.2\nIs debug build: False\nCUDA used to build PyTorch: None\nROCM used to build PyTorch: N/A\nIs CUDA available: False"),
    ("model_download_offline", "huggingface_hub.errors.OfflineModeIsEnabled: Cannot reach https://huggingface.co/api/models/org/model/refs: offline mode is enabled. To disable it, please unset the `HF_HUB_OFFLINE` environment variable."),
    ("xformers_attention", "ModuleNotFoundError: Refer to https://github.com/facebookresearch/xformers for more information on how to install \nxformers"),
    ("xformers_attention", "    out = xformers.ops.memory_efficient_attention(\nAttributeError: module 'xformers' has no attribute 'ops'"),
    ("cpu_ram_oom", "RuntimeError: unable to mmap 23802932552 bytes from file <./flux1-dev.safetensors>: Cannot allocate memory (12)"),
    ("cpu_ram_oom", "RuntimeError: [enforce fail at alloc_cpu.cpp:83] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate 4718592000 bytes. Error code 12 (Cannot allocate memory)"),
    ("disk_space", "RuntimeError: [enforce fail at inline_container.cc:603] . unexpected pos 1472 vs 1366"),
    ("disk_space", "OSError: [Errno 28] No space left on device: '/home/user/.cache/huggingface/hub/tmpq3b1'"),
    ("driver_library_mismatch", "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 550.90"),
    ("driver_library_mismatch", "UserWarning: CUDA initialization: The NVIDIA driver on your system is too old (found version 11040). Please update your GPU driver"),
    ("no_kernel_image", "UserWarning: NVIDIA GeForce RTX 5090 with CUDA capability sm_120 is not compatible with the current PyTorch installation.\nThe current PyTorch install supports CUDA capabilities sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90."),
    ("torch_cpu_only", "AssertionError: Torch not compiled with CUDA enabled"),
    ("torch_cpu_only", "RuntimeError: Torch is not able to use GPU; add --skip-torch-cuda-test to COMMANDLINE_ARGS variable to disable this check"),
    ("cuda_not_visible", "RuntimeError: No CUDA GPUs are available"),
    ("cuda_not_visible", "docker: Error response from daemon: could not select device driver \"\" with capabilities: [[gpu]]."),
    ("device_mismatch", "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu! (when checking argument for argument mat1 in method wrapper_CUDA_addmm)"),
    ("device_mismatch", "RuntimeError: Input type (torch.FloatTensor) and weight type (torch.cuda.FloatTensor) should be the same or input should be a MKLDNN tensor and weight is a dense tensor"),
    ("dtype_mismatch", "RuntimeError: Input type (float) and bias type (c10::Half) should be the same"),
    ("dtype_mismatch", "RuntimeError: \"LayerNormKernelImpl\" not implemented for 'Half'"),
    ("dtype_mismatch", "ValueError: Attempting to unscale FP16 gradients."),
    ("nan_inf", "modules.devices.NansException: A tensor with all NaNs was produced in VAE. This could be because there's not enough precision to represent the picture. Try adding --no-half-vae commandline argument to fix this."),
    ("nan_inf", "[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 65536, reducing to 32768\nCurrent loss scale already at minimum - cannot decrease scale anymore. Exiting run."),
    ("nan_inf", "{'loss': 0.0, 'grad_norm': nan, 'learning_rate': 0.0002, 'epoch': 0.12}\n{'loss': nan, 'grad_norm': nan, 'learning_rate': 0.0002, 'epoch': 0.13}"),
    ("illegal_memory_access", "RuntimeError: CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might be incorrect."),
    ("illegal_memory_access", "../aten/src/ATen/native/cuda/Indexing.cu:1290: indexSelectLargeIndex: block: [91,0,0], thread: [64,0,0] Assertion `srcIndex < srcSelectDimSize` failed.\nRuntimeError: CUDA error: device-side assert triggered"),
    ("illegal_memory_access", "NVRM: Xid (PCI:0000:41:00): 31, pid=21223, name=python, Ch 00000008, intr 00000000. MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ 0x7f3c_00000000"),
    ("cudnn_error", "RuntimeError: cuDNN error: CUDNN_STATUS_NOT_INITIALIZED"),
    ("cudnn_error", "Could not load library libcudnn_cnn_infer.so.8. Error: libnvrtc.so: cannot open shared object file: No such file or directory"),
    # NOT_SUPPORTED on fp16 operands is a cuBLAS problem; on bf16 operands (CUDA_R_16BF) it is a GPU without bf16 (dtype_mismatch above).
    ("cublas_error", "RuntimeError: CUDA error: CUBLAS_STATUS_NOT_SUPPORTED when calling `cublasGemmStridedBatchedExFix( handle, opa, opb, m, n, k, (void*)(&falpha), a, CUDA_R_16F, lda, stridea, b, CUDA_R_16F, ldb, strideb, (void*)(&fbeta), c, CUDA_R_16F, ldc, stridec, num_batches, CUDA_R_32F, CUBLAS_GEMM_DEFAULT_TENSOR_OP)`"),
    ("nccl_error", "[E ProcessGroupNCCL.cpp:475] [Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=2, OpType=BROADCAST, NumelIn=1, NumelOut=1, Timeout(ms)=1800000) ran for 1800430 milliseconds before timing out."),
    ("nccl_error", "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1691, unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.19.3\nncclSystemError: System call (e.g. socket, malloc) or external library call failed or device error."),
    ("xformers_attention", "NotImplementedError: No operator found for `memory_efficient_attention_forward` with inputs:\n     query       : shape=(2, 4096, 8, 40) (torch.float32)"),
    ("xformers_attention", "ImportError: FlashAttention2 has been toggled on, but it cannot be used due to the following error: the package flash_attn seems to be not installed."),
    ("bitsandbytes", "The installed version of bitsandbytes was compiled without GPU support. 8-bit optimizers, 8-bit multiplication, and GPU quantization are unavailable."),
    ("bitsandbytes", "ImportError: Using `bitsandbytes` 4-bit quantization requires the latest version of bitsandbytes: `pip install -U bitsandbytes`"),
    ("version_incompat", "ImportError: cannot import name 'cached_download' from 'huggingface_hub' (/venv/lib/python3.10/site-packages/huggingface_hub/__init__.py)"),
    ("version_incompat", "ValueError: The checkpoint you are trying to load has model type `gemma3` but Transformers does not recognize this architecture. This could be because of an issue with the checkpoint, or because your version of Transformers is out of date."),
    ("version_incompat", "TypeError: Accelerator.__init__() got an unexpected keyword argument 'logging_dir'"),
    ("version_incompat", "jinja2.exceptions.TemplateError: System role not supported"),
    ("model_download_offline", "OSError: We couldn't connect to 'https://huggingface.co' to load this file, couldn't find it in the cached files and it looks like google/gemma-2-2b-it is not the path to a directory containing a file named config.json."),
    ("model_download_offline", "huggingface_hub.errors.GatedRepoError: 401 Client Error. Cannot access gated repo for url https://huggingface.co/google/gemma-2-2b-it/resolve/main/config.json.\nAccess to model google/gemma-2-2b-it is restricted. You must have access to it and be authenticated to access it. Please log in."),
    ("checkpoint_mismatch", "RuntimeError: Error(s) in loading state_dict for LlamaForCausalLM:\n\tsize mismatch for model.embed_tokens.weight: copying a param with shape torch.Size([32002, 4096]) from checkpoint, the shape in current model is torch.Size([32000, 4096])."),
    ("checkpoint_mismatch", "safetensors_rust.SafetensorError: Error while deserializing header: HeaderTooLarge"),
    ("gpu_hardware_xid", "[Tue Jun  4 03:12:44 2024] NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n[Tue Jun  4 03:12:44 2024] NVRM: GPU 0000:3b:00.0: GPU has fallen off the bus."),
    ("gpu_hardware_xid", "RuntimeError: CUDA error: uncorrectable ECC error encountered"),
    ("dataloader_workers", "ERROR: Unexpected bus error encountered in worker. This might be caused by insufficient shared memory (shm).\nRuntimeError: DataLoader worker (pid 3019) is killed by signal: Bus error."),
    ("nan_inf", "caching latents...\n  File \"D:\\kohya_ss\\sd-scripts\\library\\train_util.py\", line 2428, in cache_batch_latents\nRuntimeError: NaN detected in latents: D:\\train\\img\\100_x\\020.jpg"),
    ("checkpoint_mismatch", "!!! Exception during processing !!! mat1 and mat2 shapes cannot be multiplied (154x2048 and 768x320)"),
    ("bitsandbytes", "[ERROR] bitsandbytes library load error: Configured CUDA binary not found at /venv/lib/python3.11/site-packages/bitsandbytes/libbitsandbytes_cuda128.so"),
    ("version_incompat", "  File \"/venv/lib/python3.11/site-packages/diffusers/schedulers/scheduling_dpmsolver_multistep.py\", line 561, in convert_model_output\n    sigma = self.sigmas[self.step_index]\nIndexError: index 51 is out of bounds for dimension 0 with size 51"),
    ("driver_library_mismatch", "RuntimeError: CUDA error: system not yet initialized\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side assertions."),
    ("version_incompat", "A module that was compiled using NumPy 1.x cannot be run in\nNumPy 2.0.2 as it may crash. To support both 1.x and 2.x\nImportError: numpy.core.multiarray failed to import"),
    ("version_incompat", "AttributeError: module 'torch' has no attribute 'float8_e4m3fn'"),
    ("cuda_oom", "tensorflow.python.framework.errors_impl.ResourceExhaustedError: OOM when allocating tensor with shape[64,1024,1024] and type float on /job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc"),
    ("dataloader_workers", "RuntimeError: Too many open files. Communication with the workers is no longer possible. Please increase the limit using `ulimit -n` in the shell or change the sharing strategy by calling `torch.multiprocessing.set_sharing_strategy('file_system')` at the beginning of your code"),
]

BEFORE = ("Loading checkpoint shards: 100%|██████████| 4/4 [00:09<00:00,  2.31s/it]\n"
          "\r  3%|▎         | 31/1000 [00:14<07:29,  2.16it/s]\r  3%|▎         | 32/1000 [00:14<07:28,  2.16it/s]\n"
          "{'loss': 1.4312, 'grad_norm': 0.91, 'learning_rate': 0.0002, 'epoch': 0.03}\n"
          "Traceback (most recent call last):\n  File \"/work/train.py\", line 141, in <module>\n    trainer.train()\n")
AFTER = ("\nwandb: 🚀 View run at https://wandb.ai/team/proj/runs/x1\n"
         "E0601 10:00:02.123000 140 torch/distributed/elastic/multiprocessing/api.py:833] failed (exitcode: 1) local_rank: 0\n")


@pytest.mark.parametrize(("label", "message"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_known_message_is_diagnosed(label: str, message: str) -> None:
    result = match_log(BEFORE + message + AFTER, kb=KB, top=3)
    got = [(d.category, d.id) for d in result.matches]
    assert got and got[0][0] == label, got
