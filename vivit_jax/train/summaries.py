"""A run's scalars for TensorBoard and the console, without loading TensorFlow.

clu's metric writers load TensorFlow as soon as any of them is imported (its package imports its TensorFlow
summary writer), and TensorFlow took 3.5 s of every training process's start on 2 CPU cores; a run on synthetic
or video-folder data needs it for nothing else. So a local workdir gets its event file from here:

- `EventFile(logdir)` writes `events.out.tfevents.<time>.<host>.<pid>.<n>.v2`, the name TensorFlow's writer
  gives it: TFRecord framing (length, masked CRC-32C of the length, the serialised `Event`, masked CRC-32C of
  it) around a first `Event` naming the file version, then one `Event` per `write_scalars` call holding a
  `Summary` value per tag as `tf.summary.scalar` (and so clu) writes it: a float32 scalar tensor marked for the
  'scalars' plugin. Each call is flushed, so TensorBoard shows a step as soon as it is logged.
- `log_scalars(step, scalars)` is clu's `LoggingWriter` line: `[step] name=value, ...`, sorted, floats `%.6g`.
- `open_events(workdir)`: an `EventFile`, or for a remote workdir (gs://...) clu's TensorFlow writer, which
  writes through TensorFlow's file systems.
"""

import itertools
import logging
import os
import socket
import struct
import time
from typing import Mapping, Union

from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from vivit_jax.paths import is_remote

Scalar = Union[int, float]


def _crc32c_table():
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)  # Castagnoli's polynomial, reflected.
    table.append(crc)
  return tuple(table)


_CRC32C_TABLE = _crc32c_table()
_WRITERS = itertools.count()  # The <n> of the file name: two writers of one process in one second differ.


def crc32c(data: bytes) -> int:
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """The CRC that TFRecord files store: rotated right by 15 bits plus a constant."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
  """One TFRecord: `data` framed by its length and both checksums."""
  length = struct.pack('<Q', len(data))
  return length + struct.pack('<I', masked_crc32c(length)) + data + struct.pack('<I', masked_crc32c(data))


_SCALARS = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name='scalars'))


def _float32_scalar(value: Scalar) -> tensor_pb2.TensorProto:
  return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(),
                                tensor_content=struct.pack('<f', value))


class EventFile:
  """A TensorBoard event file of scalars in `logdir` (created if missing)."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    now = time.time()
    name = f'events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}.{next(_WRITERS)}.v2'
    self.path = os.path.join(logdir, name)
    self._file = open(self.path, 'ab')
    self._write(event_pb2.Event(wall_time=now, file_version='brain.Event:2'))

  def _write(self, event: event_pb2.Event) -> None:
    self._file.write(tfrecord(event.SerializeToString()))
    self._file.flush()

  def write_scalars(self, step: int, scalars: Mapping[str, Scalar]) -> None:
    values = [summary_pb2.Summary.Value(tag=k, tensor=_float32_scalar(v), metadata=_SCALARS)
              for k, v in scalars.items()]
    self._write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values)))

  def close(self) -> None:
    self._file.close()


def open_events(workdir: str):
  """The event writer of `workdir`: an EventFile, or clu's TensorFlow writer for a remote workdir."""
  if is_remote(workdir):
    from clu import metric_writers  # pylint: disable=g-import-not-at-top  # Loads TensorFlow.
    return metric_writers.SummaryWriter(workdir)
  return EventFile(workdir)


def log_scalars(step: int, scalars: Mapping[str, Scalar]) -> None:
  values = [f'{k}={v:.6g}' if isinstance(v, float) else f'{k}={v}' for k, v in sorted(scalars.items())]
  logging.info('[%d] %s', step, ', '.join(values))
