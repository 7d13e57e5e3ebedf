"""Where a traced train step's time goes: the kernels (GPU) or operators (CPU) of a `jax.profiler` trace, summed
per step and grouped by what they compute, from each kernel's name and its HLO instruction's op name.

On a GPU the kernels run one after another on a stream, so the groups add up to the device's busy time. On a
CPU independent operators run at the same time on different cores, so the groups are operator time, which can
add up to more than the step's wall time.
"""

import collections
import glob
import gzip
import json
import os
import re
from typing import Any, Dict, Iterable, List, Tuple

# (group, kernel-name pattern, op-name pattern): the first that matches either names the group.
GROUPS: Tuple[Tuple[str, str, str], ...] = (
    ('attention', r'sdpa|flash|fmha|cudnn::fusion', r'dot_product_attention|chunked_attention|attention_weights'),
    ('convolution', r'convolution|convolve|nchwToNhwc|nhwcToNchw|_wgrad_|_dgrad_', r'conv_general_dilated'),
    ('matmul', r'^nvjet|gemm|cublas|^ynn|^dot|^cutlass', r'dot_general'),
    ('transpose or copy', r'transpose|^copy', r'/transpose$'),
    ('layer norm', r'^$', r'LayerNorm'),
    ('MLP (GELU, bias)', r'^$', r'MlpBlock'),
    ('optimizer', r'^$', r'adam|opt_state|clip_by|global_norm'),
)


def op_names(hlo_text: str) -> Dict[str, str]:
  """{instruction name: op_name} of a compiled HLO module, each name also with '.' as '_' (GPU kernels are named
  after their fusion that way)."""
  names = {}
  for match in re.finditer(r'^\s*(?:ROOT )?%(\S+) = [^\n]*?op_name="([^"]*)"', hlo_text, re.MULTILINE):
    names[match.group(1)] = names[match.group(1).replace('.', '_')] = match.group(2)
  return names


def group_of(kernel: str, op_name: str) -> str:
  for group, kernel_pattern, op_pattern in GROUPS:
    if re.search(kernel_pattern, kernel) or re.search(op_pattern, op_name):
      return group
  return 'other'


def _events(trace: Dict[str, Any], names: Dict[str, str]) -> Iterable[Dict[str, Any]]:
  """The complete events of the device's processes where the trace has any (GPU kernels, library ones
  included), else the host's events named after an instruction of the module (CPU operators)."""
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  processes = {e['pid']: e['args']['name'] for e in events if e.get('ph') == 'M' and e.get('name') == 'process_name'}
  devices = {pid for pid, name in processes.items() if name.startswith('/device:')}
  for e in events:
    if e.get('ph') == 'X' and 'dur' in e and (e['pid'] in devices if devices else e['name'] in names):
      yield e


def summarize(directory: str, hlo_text: str, steps: int) -> Dict[str, Any]:
  """{'ms_per_step', 'groups': [(group, ms per step, share), ...] largest first, 'top': the 10 longest
  kernels as (name, op name, ms per step)} of the trace `jax.profiler.trace` wrote under `directory`."""
  paths = glob.glob(os.path.join(directory, 'plugins', 'profile', '*', '*.trace.json.gz'))
  if not paths:
    raise FileNotFoundError(f'no *.trace.json.gz under {directory}/plugins/profile')
  with gzip.open(max(paths, key=os.path.getmtime), 'rt') as f:
    trace = json.load(f)
  names = op_names(hlo_text)
  groups, kernels = collections.Counter(), collections.Counter()
  for e in _events(trace, names):
    op = names.get(e['name'], '')
    groups[group_of(e['name'], op)] += e['dur'] / 1e3 / steps
    kernels[(e['name'], op)] += e['dur'] / 1e3 / steps
  total = sum(groups.values())
  return {'ms_per_step': round(total, 3),
          'groups': [(g, round(ms, 3), round(ms / total, 4)) for g, ms in groups.most_common()] if total else [],
          'top': [(kernel[:100], op[-100:], round(ms, 3)) for (kernel, op), ms in kernels.most_common(10)]}


def format_summary(summary: Dict[str, Any]) -> str:
  return (f"profile, {summary['ms_per_step']:.1f} ms of kernel time per step: " +
          ', '.join(f'{g} {ms:.1f} ({100 * share:.0f}%)' for g, ms, share in summary['groups']))
