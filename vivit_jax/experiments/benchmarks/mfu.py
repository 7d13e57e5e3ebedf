"""Model FLOPs utilisation: a benchmark's clips/s against the accelerator's dense bfloat16 peak."""

from typing import Any, Dict, Optional

DENSE_BF16_TFLOPS = {'H100': 989.4, 'H200': 989.4, 'H800': 989.4, 'A100': 312.0, 'A800': 312.0, 'L4': 121.0,
                     'TPU v4': 275.0, 'TPU v5 lite': 197.0, 'TPU v5p': 459.0, 'TPU v6 lite': 918.0}


def dense_bf16_tflops(device_kind: str) -> Optional[float]:
  """The card's dense (not sparse) bfloat16 peak in TFLOP/s, for the device kinds listed; None for others."""
  return next((peak for name, peak in DENSE_BF16_TFLOPS.items() if name.lower() in device_kind.lower()), None)


def add_mfu(result: Dict[str, Any]) -> Dict[str, Any]:
  """Adds `forward_mfu` and `train_mfu` to each run on a device with a known peak: FLOPs are 2 x the
  multiply-adds of models/complexity.py per clip (`gflops_per_clip` counts multiply-adds, as the paper does), and
  a train step counts 3 x the forward pass."""
  flops_per_clip = 2e9 * result['gflops_per_clip']
  for run in result['runs']:
    peak = dense_bf16_tflops(run['device'])
    if peak and result['dtype'] == 'bfloat16':
      run['forward_mfu'] = flops_per_clip * run['forward_clips_per_s'] / (peak * 1e12)
      run['train_mfu'] = 3 * flops_per_clip * run['train_clips_per_s'] / (peak * 1e12)
  return result
