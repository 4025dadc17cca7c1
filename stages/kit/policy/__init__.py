"""The policy: loading (devices, dtypes, LoRA adapters, thread counts), generation with the
transformers and vLLM backends, llama2.c conversion, and ``widen`` (a copy of a small Llama with
32-wide attention heads, which vLLM's CPU kernels need; shipped for users who run vLLM on CPU
and used by ``just test-vllm``)."""
