"""Where a traced step's time goes (experiments/benchmarks/profile.py), on a GPU-like trace made here: the names
are those of an H200's ViViT-B train step (cuDNN flash attention, cuBLAS's nvjet matmuls, XLA's fusions)."""

import gzip
import json

from vivit_jax.experiments.benchmarks import profile

HLO = '''HloModule jit_train_step
ENTRY %main {
  %input_transpose_fusion.49 = f32[8,768,3144]{2,1,0} fusion(%a), metadata={op_name="transpose(jvp(M))/LayerNorm_1/mul"}
  %loop_convert_multiply_fusion.11 = bf16[8,3144,3072]{2,1,0} fusion(%b), metadata={op_name="jvp(M)/MlpBlock_0/mul"}
  %input_reduce_fusion.113 = f32[768]{0} fusion(%c), metadata={op_name="transpose(jvp(M))/LayerNorm_1/reduce_sum"}
  ROOT %wrapped_convert.20 = bf16[8]{0} fusion(%d), kind=kLoop
}
'''
KERNELS = (  # (name, microseconds over the two traced steps, expected group)
    ('cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26_64x64x64', 4000.0, 'attention'),
    ('nvjet_sm90_tst_128x128_64x6_2x1_v_bz_TNT', 2000.0, 'matmul'),
    ('void implicit_convolveNd_sgemm<__nv_bfloat16, 3, 128>(int, int)', 1000.0, 'convolution'),
    ('input_transpose_fusion_49', 600.0, 'transpose or copy'),
    ('loop_convert_multiply_fusion_11', 200.0, 'MLP (GELU, bias)'),
    ('input_reduce_fusion_113', 160.0, 'layer norm'),
    ('wrapped_convert_20', 40.0, 'other'),
)


def _trace(tmp_path):
  events = [{'ph': 'M', 'name': 'process_name', 'pid': 1, 'args': {'name': '/device:GPU:0'}},
            {'ph': 'M', 'name': 'process_name', 'pid': 7, 'args': {'name': '/host:CPU'}},
            {'ph': 'X', 'pid': 7, 'tid': 1, 'ts': 0, 'dur': 9e6, 'name': 'input_transpose_fusion.49'}]  # Not counted.
  events += [{'ph': 'X', 'pid': 1, 'tid': 14, 'ts': i, 'dur': dur, 'name': name} for i, (name, dur, _) in
             enumerate(KERNELS)]
  run = tmp_path / 'plugins' / 'profile' / '2026_11_27'
  run.mkdir(parents=True)
  with gzip.open(run / 'host.trace.json.gz', 'wt') as f:
    json.dump({'traceEvents': events}, f)


def test_kernels_are_grouped_by_their_names_and_their_fusions_op_names(tmp_path):
  _trace(tmp_path)
  summary = profile.summarize(str(tmp_path), HLO, steps=2)
  assert summary['ms_per_step'] == 4.0  # 8 ms of device kernels over 2 steps; the host's events left out.
  groups = {g: (ms, share) for g, ms, share in summary['groups']}
  for name, dur, group in KERNELS:
    assert groups[group][0] == dur / 2e3, (name, group, groups)
  assert summary['groups'][0][:2] == ('attention', 2.0) and groups['attention'][1] == 0.5
  assert summary['top'][3] == ('input_transpose_fusion_49', 'transpose(jvp(M))/LayerNorm_1/mul', 0.3)
  text = profile.format_summary(summary)
  assert text.startswith('profile, 4.0 ms of kernel time per step: attention 2.0 (50%), matmul 1.0 (25%)')


def test_a_directory_without_a_trace_is_named():
  try:
    profile.summarize('/nonexistent/prof', HLO, 1)
  except FileNotFoundError as e:
    assert '/nonexistent/prof' in str(e)
  else:
    raise AssertionError('expected FileNotFoundError')
