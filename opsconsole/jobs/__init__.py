"""Smoke-job programs that run in the CHILD process (`python -m opsconsole.jobs KIND ...`).

This is the only package that imports torch / transformers / diffusers / peft,
and it does so inside functions: importing a job module to build its argument
parser (the console validates flags before launching) must stay cheap.

Each job module exposes:
    build_parser() -> argparse.ArgumentParser   # flags of that kind (common ones included)
    main(args, ctx: JobContext) -> dict         # runs the job, returns the final metrics
"""

# kind -> module name in this package
JOB_KINDS: dict[str, str] = {
    "gemma-infer": "gemma_infer",
    "sd-infer": "sd_infer",
    "gemma-lora": "gemma_lora",
    "sd-lora": "sd_lora",
    "sd-dreambooth": "sd_dreambooth",
    "nccl-check": "nccl_check",
    "selftest": "selftest",  # torch-free, for testing the run machinery
}
