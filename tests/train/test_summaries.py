"""The TensorFlow-free event files and console lines of vivit_jax/train/summaries.py, read back by TensorBoard's
and TensorFlow's own readers. That a training run never loads TensorFlow is checked on the README's demo run
(tests/experiments/test_demos.py)."""

import logging
import os

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from vivit_jax.train import summaries


def test_crc32c_is_castagnoli_s():
  assert summaries.crc32c(b'123456789') == 0xE3069283  # The standard check value of CRC-32C.
  assert summaries.crc32c(b'') == 0


def _records(path):
  return list(tf.compat.v1.io.tf_record_iterator(path))  # Checks both checksums of every record.


def test_tfrecord_framing_is_what_tensorflow_reads_and_checks(tmp_path):
  path = str(tmp_path / 'records')
  payloads = [b'', b'x', bytes(range(256)) * 3]
  with open(path, 'wb') as f:
    for data in payloads:
      f.write(summaries.tfrecord(data))
  assert _records(path) == payloads
  with open(path, 'r+b') as f:  # One payload byte flipped: TensorFlow's reader must see the checksum fail.
    f.seek(16 + 17 + 12 + 10)  # Records of 12 + len + 4 bytes; the third one's tenth byte.
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))
  with pytest.raises(tf.errors.DataLossError):
    _records(path)


def test_tensorboard_reads_the_scalars_of_an_event_file(tmp_path):
  logdir = str(tmp_path / 'run')
  events = summaries.EventFile(logdir)
  events.write_scalars(10, {'train/loss': 2.5, 'valid/num_videos': 512})
  events.write_scalars(20, {'train/loss': 1.25})
  other = summaries.EventFile(logdir)  # A second writer of this process gets its own file.
  other.close()
  events.close()
  names = sorted(os.listdir(logdir))
  assert len(names) == 2 and all(n.startswith('events.out.tfevents.') and n.endswith('.v2') for n in names)
  assert {n.split('.')[-3] for n in names} == {str(os.getpid())}
  accumulator = event_accumulator.EventAccumulator(events.path)
  accumulator.Reload()
  assert accumulator.file_version == 2.0
  assert sorted(accumulator.Tags()['tensors']) == ['train/loss', 'valid/num_videos']  # As tf.summary.scalar's.
  read = lambda tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in accumulator.Tensors(tag)]
  assert read('train/loss') == [(10, 2.5), (20, 1.25)] and read('valid/num_videos') == [(10, 512.0)]
  assert accumulator.SummaryMetadata('train/loss').plugin_data.plugin_name == 'scalars'


def test_console_lines_are_clu_s(caplog):
  with caplog.at_level(logging.INFO):
    summaries.log_scalars(7, {'valid/loss': 0.123456789, 'valid/num_videos': 512, 'a': 1.0})
  assert caplog.messages == ['[7] a=1, valid/loss=0.123457, valid/num_videos=512']



def test_a_remote_workdir_gets_tensorflow_s_writer(tmp_path, monkeypatch):
  monkeypatch.setattr(summaries, 'is_remote', lambda path: True)  # tmp_path stands in for gs://...
  events = summaries.open_events(str(tmp_path))
  assert not isinstance(events, summaries.EventFile)
  events.write_scalars(3, {'train/loss': 0.5})
  events.close()
  accumulator = event_accumulator.EventAccumulator(str(tmp_path))
  accumulator.Reload()
  assert [e.step for e in accumulator.Tensors('train/loss')] == [3]
