"""The benchmarks run (their numbers are printed by scripts/benchmark.py, never asserted)."""

from vivit_jax import benchmarks


def test_data_benchmark_runs_on_tiny_videos(tmp_path):
  result = benchmarks.data_benchmark(str(tmp_path), num_videos=4, video_frames=12, height=48, width=64,
                                     batch_size=2, num_batches=1, num_frames=4, crop_size=32, min_resize=40)
  assert result['tfdata_clips_per_s'] > 0 and result['pyav_loop_clips_per_s'] > 0
  assert result['clip'] == '4x32x32'
