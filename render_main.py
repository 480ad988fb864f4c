"""Renders talking portraits offline from a trained workdir.

  python render_main.py --workdir=W --audio=a.wav [--audio=b.npy ...] --out=DIR
  python render_main.py --workdir=W --split=val --out=DIR [--mouth=measured]
  [--checkpoint_step=N] [--poses=train|static|transforms.json]
  [--background=img.png] [--frames] [--parsing] [--nooccupancy]
  [--full_frame [--source_video=clip.mp4]] [--blinks=track|natural|open]
  [--blink_seed=N]

New audio: one `DIR/<audio-stem>.mp4` (H.264, the dataset's fps, audio
muxed in) per --audio, driven by the training pose track played forward
then backward (`--poses=static` for a still head, `--poses=transforms.json`
for a given track).  A model given the eye openness (configs/video.py)
blinks as the pose track's frames did (--blinks=track), on a natural
schedule (--blinks=natural) or not at all (--blinks=open); val frames get
their own.  Val: `DIR/<frame_id>.png`, `DIR/parsing_<frame_id>.png`,
`DIR/val.mp4` and `DIR/metrics.json`.  A workdir trained on a video
(configs/video.py) also gets the render pasted back into the source video's
frames at their size: `DIR/<audio-stem>_full_frame.mp4` with --full_frame,
`DIR/val_full_frame.mp4` whenever the source video is found.  Bad input
ends with one `error: ...` line and exit status 1.

Each frame renders with its own occupancy grid, measured from the
checkpoint first (config.occupancy: empty rays skipped, the others sampled
over their occupied interval only); --nooccupancy renders every ray with
all its samples, as training's eval does.

Several hosts render together (each frame's rays spread over every device;
process 0 writes the files) with the flags of train_main.py: --distributed
on a cluster JAX detects, or --coordinator_address, --num_processes and
--process_id.
"""
import sys

from absl import app
from absl import flags

from ssp_nerf_jax import cli
from ssp_nerf_jax.evaluation import scores
from ssp_nerf_jax.offline import blinks
from ssp_nerf_jax.offline import full_frame
from ssp_nerf_jax.offline import job_inputs
from ssp_nerf_jax.offline import jobs
from ssp_nerf_jax.offline import trained as trained_lib
from ssp_nerf_jax.runtime import errors
from ssp_nerf_jax.runtime import parallel

flags.DEFINE_string('workdir', None, 'Training workdir (config.json + '
                    'checkpoints/).')
flags.DEFINE_multi_string('audio', [], 'Audio file (any rate/channels) or '
                          '.npy features [N, 16, C]; repeatable.')
flags.DEFINE_enum('split', None, ['val'], 'Render and score a dataset split.')
flags.DEFINE_string('out', None, 'Output directory.')
flags.DEFINE_integer('checkpoint_step', None, 'Checkpoint step (default: '
                     'latest).')
flags.DEFINE_string('poses', 'train', "'train' (training track, ping-pong), "
                    "'static' (first train pose) or a transforms.json path.")
flags.DEFINE_string('background', None, 'Image to composite over instead of '
                    "the dataset's plate (resized if needed).")
flags.DEFINE_integer('chunk', None, 'Rays per device per chunk (default: '
                     'config.render.chunk); 2048 keeps a 450 px paper-config '
                     'frame under 2 GiB on CPU, 8192 peaks at 5.2 GiB.')
flags.DEFINE_bool('occupancy', None, 'Render each frame with its own '
                  'occupancy grid (default: config.occupancy.enabled, on); '
                  '--nooccupancy renders every ray with all samples.')
flags.DEFINE_enum('mouth', 'audio', ['audio', 'measured'],
                  "--split=val, a model given the mouth opening: 'audio' "
                  'predicts it from the speech (as for new audio); '
                  "'measured' gives the val frames' own, to see how well the "
                  'field draws an opening apart from the audio.')
flags.DEFINE_enum('val_poses', 'refined', ['refined', 'fitted'],
                  "--split=val of a run with pose refinement: 'refined' "
                  'scores with the val poses corrected against their frames '
                  "after training (field frozen), 'fitted' with the "
                  'preprocessed ones.')
flags.DEFINE_enum('blinks', 'track', list(blinks.MODES),
                  "New audio, a model given the eye openness: 'track' the "
                  "pose track's own frames' (in the poses' order), 'natural' "
                  "a seeded schedule of 15-20 blinks a minute, 'open' none.")
flags.DEFINE_integer('blink_seed', 0, "Seed of --blinks=natural's schedule: "
                     'another seed, other blink times.')
flags.DEFINE_bool('frames', False, 'Also keep PNG frames in DIR/<stem>/.')
flags.DEFINE_bool('parsing', False, 'Also write DIR/<stem>_parsing.mp4.')
flags.DEFINE_bool('full_frame', False, 'Also write DIR/<stem>_full_frame.mp4: '
                  'the renders pasted back into the source video frames '
                  'the training pose track came from (video-trained '
                  'workdirs, --poses=train).')
flags.DEFINE_string('source_video', None, 'The video the workdir was '
                    "preprocessed from, if it moved from where the dataset's "
                    'preprocess.json says.')
cli.define_process_flags()
FLAGS = flags.FLAGS


def run():
  """Does what the flags ask; raises UserError on bad input."""
  if not FLAGS.workdir or not FLAGS.out:
    raise errors.UserError('--workdir and --out are required')
  if bool(FLAGS.audio) == bool(FLAGS.split):
    raise errors.UserError('give either --audio=FILE (repeatable) or '
                           '--split=val')
  cli.join_processes_from_flags()
  trained = trained_lib.load_trained(FLAGS.workdir, FLAGS.checkpoint_step)
  if FLAGS.chunk is not None:
    if FLAGS.chunk < 1:
      raise errors.UserError(f'--chunk must be positive, got {FLAGS.chunk}')
    trained.config.render.chunk = FLAGS.chunk
  if FLAGS.occupancy is not None:
    trained.config.occupancy.enabled = FLAGS.occupancy
  if FLAGS.background:
    trained = jobs.with_background(trained, FLAGS.background)
  if FLAGS.full_frame and not FLAGS.split and FLAGS.poses != 'train':
    raise errors.UserError('--full_frame pastes renders into the frames of '
                           f'the training track: use --poses=train, not '
                           f'{FLAGS.poses}')
  source = None  # val writes it when it can; new audio when asked
  if FLAGS.split or FLAGS.full_frame:
    source = full_frame.find_source(trained, FLAGS.source_video,
                                    required=FLAGS.full_frame)
  jobs.check_out_dir(FLAGS.out)
  if FLAGS.split:
    result = jobs.render_val(trained, FLAGS.out, mouth=FLAGS.mouth,
                             poses=FLAGS.val_poses,
                             source=source)
    report(f'val: {scores.val_summary(result)} -> {FLAGS.out}')
    return
  # Every input is checked before the (slow) grid and the first render.
  inputs = [job_inputs.audio_windows(path, trained)
            for path in FLAGS.audio]
  track = job_inputs.load_track(FLAGS.poses, trained)
  track_eyes = job_inputs.track_openness(FLAGS.poses, trained)
  bound = jobs.make_renderer(trained)  # one compilation for all videos
  for path, windows in zip(FLAGS.audio, inputs):
    eyes = blinks.render_openness(FLAGS.blinks, trained, len(windows[0]),
                                  track_eyes, seed=FLAGS.blink_seed)
    report(jobs.render_audio(trained, path, FLAGS.out, track, FLAGS.frames,
                             FLAGS.parsing, bound=bound, inputs=windows,
                             source=source, eyes=eyes))


def report(line):
  """Prints `line` once: on process 0 (every process renders the same)."""
  if parallel.is_main_process():
    print(line, flush=True)


def main(argv):
  cli.start(argv)
  try:
    run()
  except errors.UserError as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  app.run(main)
