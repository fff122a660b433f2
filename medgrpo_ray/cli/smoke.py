"""The smoke demo of the rollout/learner contract: medgrpo-smoke (or python -m medgrpo_ray.cli.smoke)
    [--config configs/quickstart_cpu.yaml] [KEY=VALUE ...]

One real video, G completions sampled by vLLM, their per-token log-probs recomputed by the HF learner path; prints
both prompt token counts and the largest log-prob gap. Exit status: 0 the two sides agree, 1 they do not, 2 usage
or config error.
"""
from __future__ import annotations

import json
import logging

from medgrpo_ray.cli.common import argv_or_sys, load_config_or_none, parser_for


def main(argv: list[str] | None = None) -> int:
    args = parser_for(None, __doc__).parse_intermixed_args(argv_or_sys(argv))
    cfg = load_config_or_none(args.config, args.overrides)
    if cfg is None:
        return 2
    from medgrpo_ray.config import to_redacted_yaml
    from medgrpo_ray.workflows.smoke import run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(to_redacted_yaml(cfg))
    result = run(cfg)
    print(json.dumps(result, indent=2))
    ok = result["prompt_tokens_hf"] == result["prompt_tokens_vllm"] and result["max_abs_logprob_gap"] < 1e-3
    print(f"smoke demo {'OK' if ok else 'FAILED'}: {len(result['samples'])} samples, "
          f"max |vLLM - HF| log-prob gap {result['max_abs_logprob_gap']:.2e}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
