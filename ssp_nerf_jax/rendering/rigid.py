"""Rigid camera poses on the host: validity checks, their mean, AD-NeRF's
bounds and track order."""
import numpy as np

# Tolerance on R R^T = I, det R = 1 and the last row 0 0 0 1.
ATOL = 1e-3
# AD-NeRF's ray bounds: the mean camera distance from the head origin
# minus / plus these.
NEAR_MARGIN, FAR_MARGIN = 0.2, 0.4


def adnerf_bounds(c2w) -> tuple[float, float]:
  """AD-NeRF's (near, far) of poses c2w [N, 4, 4]."""
  distance = float(np.mean(np.linalg.norm(np.asarray(c2w)[:, :3, 3],
                                          axis=-1)))
  return distance - NEAR_MARGIN, distance + FAR_MARGIN


def ping_pong_indices(num_frames: int, track_len: int) -> np.ndarray:
  """int64 [num_frames] indices 0, 1, .., n-1, n-2, .., 1, 0, 1, ... into a
  track of n poses played forward then backward: AD-NeRF's way for audio
  longer than the track (unlike `i % n` it never jumps)."""
  if track_len < 1:
    raise ValueError(f'track_len must be >= 1, got {track_len}')
  if track_len == 1:
    return np.zeros(num_frames, np.int64)
  period = 2 * (track_len - 1)
  phase = np.arange(num_frames) % period
  return np.where(phase < track_len, phase, period - phase)


def pose_problems(c2w) -> list[tuple[int, str]]:
  """(index, reason) of each bad matrix in [N, 4, 4]; empty if all usable."""
  c2w = np.asarray(c2w, np.float64)
  finite = np.all(np.isfinite(c2w), axis=(1, 2))
  safe = np.where(finite[:, None, None], c2w, np.eye(4))
  rot = safe[:, :3, :3]
  rigid = ((np.abs(rot @ np.swapaxes(rot, 1, 2) - np.eye(3)).max((1, 2)) <
            ATOL) &
           (np.abs(np.linalg.det(rot) - 1) < ATOL) &
           (np.abs(safe[:, 3] - [0, 0, 0, 1]).max(1) < ATOL))
  problems = []
  for i in range(len(c2w)):
    if not finite[i]:
      problems.append((i, 'has non-finite values'))
    elif not rigid[i]:
      problems.append((i, 'is not rigid (rotation not orthonormal, or last '
                          'row not 0 0 0 1)'))
  return problems


def mean_pose(c2w) -> np.ndarray:
  """[N, 4, 4] -> [4, 4]: mean translation, mean rotation projected on SO(3)."""
  c2w = np.asarray(c2w, np.float64)
  u, _, vt = np.linalg.svd(c2w[:, :3, :3].mean(axis=0))
  flip = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
  mean = np.eye(4)
  mean[:3, :3] = u @ flip @ vt
  mean[:3, 3] = c2w[:, :3, 3].mean(axis=0)
  return mean
