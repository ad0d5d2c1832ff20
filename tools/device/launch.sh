#!/bin/bash
# One self-contained device call: install, unpack the payload P, train the named runs side by side for BUDGET s, collect.
# usage: launch.sh P BUDGET JOB...
set -u
P=$1; BUDGET=$2; shift 2; JOBS="$*"
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $P/whl/*.whl || exit 1
N=$#; WORKERS=$(( 16 / N - 1 > 4 ? 4 : 16 / N - 1 ))  # data workers per run: the runs share the 16 cores and the GPU's memory
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 \
  XLA_PYTHON_CLIENT_MEM_FRACTION=$(python3 -c "print(round(0.8 / $N, 2))")
# the starting weights at their repository paths (pack.py keeps them), so recipe.json names them there
[ -d $P/init ] && cp -r $P/init/. .
python3 $P/unpack.py $P/data .gpu_data > /dev/null || exit 1
# a call on a still-warm machine finds the last call's runs in .gpu_prev (the "-c" jobs continue from them)
R=.gpu_runs; [ -d $R ] && rm -rf .gpu_prev && mv $R .gpu_prev; mkdir -p $R
CXR='--set dataset=["kermany_pediatric_cxr_128","cxr_hannover_1024"] --set dataset_weights=[0.25,0.75] --set min_side=512 --set crop_size=128 --set crops_per_image=4 --set max_train_images=1000'
COMMON="--no-preset --verbose 2 --data-workers $WORKERS --set batch_size=32 --set inference_tile=[128,32] --time-budget $BUDGET"
job() { local name=$1 recipe=$2 data=$3; shift 3
  case " $JOBS " in *" $name "*) ;; *) return;; esac
  MEDZOO_DATA_DIR=$PWD/.gpu_data/$data python3 -m medzoo train $recipe --output $R/$name $COMMON "$@" > $R/$name.log 2>&1 & }
job ae-chestxray-f4c3 ae-chestxray-f4c3 chest $CXR --set init_from=stages/ae-chestxray-f4c3-native-s2/preset \
  --set learning_rate=2e-4 --set warmup_steps=200 --set 'model={"reconstruction_loss":"mse","ssim_weight":0.001}'
job vae-chestxray-f8c4 vae-chestxray-f8c4 chest $CXR --set init_from=medzoo/presets/vae-chestxray-f8c4 \
  --set learning_rate=2e-4 --set warmup_steps=200 --set 'model={"reconstruction_loss":"mse","beta":5e-6}'
# later native chest stages (payload chest-native), from the stages/ weights the tree carries: a longer run
# than stage 3 at half its rate, and the same with MSE alone (tried: no PSNR gain over MSE + 0.001 SSIM);
# the folders they start from are in git history (f4c3 -s4: commit 2b8cf20, f4c1 -s2: f16793c, f4c3 -s6: d03d9bb,
# codec -s2: 5b05cfd)
NATIVE='--set warmup_steps=200 --set inference_tile=[128,16]'
SSIM='--set model={"reconstruction_loss":"mse","ssim_weight":0.001}'
MSE='--set model={"reconstruction_loss":"mse","ssim_weight":0.0}'
job f4c3-s6 ae-chestxray-f4c3 chest $CXR $NATIVE $SSIM --set learning_rate=1e-4 --set init_from=stages/ae-chestxray-f4c3-native-s4/preset
job f4c3-s6-mse ae-chestxray-f4c3 chest $CXR $NATIVE $MSE --set learning_rate=1e-4 --set init_from=stages/ae-chestxray-f4c3-native-s4/preset
job f4c1-s3 ae-chestxray-f4c1 chest $CXR $NATIVE $SSIM --set learning_rate=2e-4 --set init_from=stages/ae-chestxray-f4c1-native-s2/preset
job f4c1-s3-mse ae-chestxray-f4c1 chest $CXR $NATIVE $MSE --set learning_rate=2e-4 --set init_from=stages/ae-chestxray-f4c1-native-s2/preset
# then from stage 6 at half its rate, Hannover at 90%: batch 32, and batch 64 at a higher rate
S6='--set init_from=stages/ae-chestxray-f4c3-native-s6/preset --set dataset_weights=[0.1,0.9]'
job f4c3-s7 ae-chestxray-f4c3 chest $CXR $NATIVE $SSIM $S6 --set learning_rate=5e-5
job f4c3-s7-b64 ae-chestxray-f4c3 chest $CXR $NATIVE $SSIM $S6 --set learning_rate=7e-5 --set batch_size=64
# vae-generalist-f8c4's native stage (payload generalist-native): its four thumbnail sets beside the native
# radiographs, the shares of the CPU stage 1 (stages/README.md)
GEN='--set dataset=["kermany_pediatric_cxr_128","brain_tumor_figshare_128","busbra_256","hc18_256","cxr_hannover_1024"] --set dataset_weights=[0.3,0.08,0.08,0.08,0.46] --set min_side=512 --set crop_size=128 --set crops_per_image=4 --set max_train_images=250'
GENMODEL='--set model={"reconstruction_loss":"mse","beta":5e-6}'
job gen-n2 vae-generalist-f8c4 gen $GEN $GENMODEL --set warmup_steps=200 --set learning_rate=2e-4 --set init_from=presets/vae-generalist-f8c4
job gen-n2-low vae-generalist-f8c4 gen $GEN $GENMODEL --set warmup_steps=200 --set learning_rate=1e-4 --set init_from=presets/vae-generalist-f8c4
# issue 36, Codec v3 stage 2 (payload chest-native): the codec recipe's own datasets (native radiographs first,
# so its quality table is theirs), from ae-chestxray-f4c3 1.8.0 widened to 12 latent channels; rate weights
# around the CPU stage 1's 1.5e-4, and the f4c1 native stage 4 from -s3 beside them
CODEC='--set max_train_images=1000 --set warmup_steps=200 --set learning_rate=2e-4 --set inference_tile=[128,16]'
job codec-rw5 codec-chestxray chest $CODEC --set 'model={"rate_weight":5e-4}'
job codec-rw15 codec-chestxray chest $CODEC --set 'model={"rate_weight":1.5e-4}'
job codec-rw15e codec-chestxray chest $CODEC --set 'model={"rate_weight":1.5e-3}'
job f4c1-s4 ae-chestxray-f4c1 chest $CXR $NATIVE $SSIM --set learning_rate=1e-4 --set dataset_weights=[0.1,0.9] \
  --set init_from=stages/ae-chestxray-f4c1-native-s3/preset
# then, in a second call on the warm machine, each codec run continued at half the rate (as rate:name pairs)
for rw in 5e-4:rw5 1.5e-4:rw15 1.5e-3:rw15e; do
  job codec-${rw#*:}-c codec-chestxray chest $CODEC --set learning_rate=1e-4 --set warmup_steps=50 \
    --set "model={\"rate_weight\":${rw%%:*}}" --set init_from=.gpu_prev/codec-${rw#*:}; done
# next (not yet run): ae-chestxray-f4c1 at f4c3's width (64/128 filters), its 1-channel latent narrowed from
# ae-chestxray-f4c3 1.8.0 (principal components, recipes/train.py), at two rates; and Codec v3 stage 3 from stage 2
WIDE='--set model={"reconstruction_loss":"mse","ssim_weight":0.001,"filters":[64,128]}'
job f4c1w ae-chestxray-f4c1 chest $CXR $NATIVE $WIDE --set learning_rate=2e-4 --set init_from=presets/ae-chestxray-f4c3
job f4c1w-low ae-chestxray-f4c1 chest $CXR $NATIVE $WIDE --set learning_rate=1e-4 --set init_from=presets/ae-chestxray-f4c3
job codec-s3 codec-chestxray chest $CODEC --set learning_rate=1e-4 --set 'model={"rate_weight":1.5e-4}' \
  --set init_from=stages/codec-chestxray-s2/preset
# a lower rate weight lifts the ceiling that costs stage 2 the high rates (40.57 dB unquantised)
job codec-s3-rw075 codec-chestxray chest $CODEC --set learning_rate=1e-4 --set 'model={"rate_weight":7.5e-5}' \
  --set init_from=stages/codec-chestxray-s2/preset
# then, in a second call, each continued from the first call's weights at half the rate (P/prev/NAME: the run's
# run.json, its recipe.json with init_from set to null, the stripped final weights), f4c1 with Hannover at 90%
job f4c1w-c ae-chestxray-f4c1 chest $CXR $NATIVE $WIDE --set learning_rate=1e-4 --set warmup_steps=50 \
  --set dataset_weights=[0.1,0.9] --set init_from=$P/prev/f4c1w
for c in codec-s3:1.5e-4 codec-s3-rw075:7.5e-5; do
  job ${c%%:*}-c codec-chestxray chest $CODEC --set learning_rate=5e-5 --set warmup_steps=50 \
    --set "model={\"rate_weight\":${c#*:}}" --set init_from=$P/prev/${c%%:*}; done
# (the wide f4c1's next stage, f4c1w-s3, went with ae-chestxray-f4c1's retirement: git history has it)
# and Codec v3 stage 4 from stage 3 (stages/codec-chestxray-s3, from codec-s3), at its rate weight and at half of it
job codec-s4 codec-chestxray chest $CODEC --set learning_rate=5e-5 --set 'model={"rate_weight":1.5e-4}' \
  --set init_from=stages/codec-chestxray-s3/preset
job codec-s4-rw075 codec-chestxray chest $CODEC --set learning_rate=5e-5 --set 'model={"rate_weight":7.5e-5}' \
  --set init_from=stages/codec-chestxray-s3/preset
# stage 3's ceiling (40.98 dB unquantised on the Hannover test split) is below JPEG 2000 at 1 bpp (41.86): its latent
# widened from 12 to 24 channels (the decoder's weights on the new ones zero, so it starts as stage 3 exactly)
job codec-w24 codec-chestxray chest $CODEC --set learning_rate=1e-4 --set 'model={"rate_weight":1.5e-4,"latent_channels":24}' \
  --set init_from=stages/codec-chestxray-s3/preset
job ae-ct-f4c3 ae-ct-f4c3 ct --set init_from=stages/ae-chestxray-f4c3-native-s2/preset --set crops_per_image=48
job vae-ct-f8c4 vae-ct-f8c4 ct --set init_from=medzoo/presets/vae-chestxray-f8c4 --set crops_per_image=48
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv; tail -n 2 $R/*.log
while [ $(( $(date +%s) - T0 )) -lt $(( BUDGET + 40 )) ] && pgrep -f "medzoo train" > /dev/null; do sleep 3; done
pkill -f "medzoo train"; sleep 2
for f in $R/*.log; do echo "== $f"; grep -E "time budget|Error|error|stopping" $f | tail -n 5; grep -E "val_loss" $f | tail -n 2; done
for d in $R/*/; do n=$(basename $d)
  if [ -f $d/final.weights.h5 ]; then python3 $P/strip.py $d/final.weights.h5 $OUT/$n.final.weights.h5
  elif [ -f $d/backup/latest.weights.h5 ]; then python3 $P/strip.py $d/backup/latest.weights.h5 $OUT/$n.latest.weights.h5; fi
  cat $d/run.json 2>/dev/null | tr -d '\n'; echo; done
tar czf $OUT/runs.tgz --exclude='*.h5' --exclude=backup $R; ls -la $OUT
