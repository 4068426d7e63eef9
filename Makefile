# make demo: install, then generate a long video with and without fast learning from the committed
#            tiny checkpoint (train it yourself with `make train`), print the metrics, write the GIFs.
# make test: install the test needs, run the tests.
PY ?= python
CKPT ?= checkpoints/tiny.pt

.PHONY: install demo train test bench preview

install:
	$(PY) -m pip install -q -r requirements.txt

demo: install
	$(PY) data.py --preview out/world.gif
	$(PY) generate.py --ckpt $(CKPT) --world-seed 200001 --actions "go right*2,go down*2,go up*2,go left*2" --out out/demo
	@echo "the video is out/demo/video.gif (without memory | with memory | ground truth); the world preview is out/world.gif"

# the recipe of checkpoints/tiny.pt (README): 14.5 minutes on one H100, many hours on a CPU
train: install
	$(PY) train.py --preset tiny --batch 128 --lr 1e-3 --warmup 500 --max-steps 1000 --ema-decay 0.9995 --out runs/tiny-a
	$(PY) train.py --preset tiny --batch 128 --lr 5e-4 --warmup 100 --max-steps 1100 --init runs/tiny-a/ckpt.pt --out runs/tiny
	$(PY) train.py --export runs/tiny/ckpt.pt runs/tiny/tiny.pt
	@echo "trained: runs/tiny/tiny.pt; use it with: make demo CKPT=runs/tiny/tiny.pt"

test:
	$(PY) -m pip install -q -r requirements.txt pytest
	$(PY) -m pytest -q tests

bench: install
	$(PY) bench.py

preview: install
	$(PY) data.py --preview out/world.gif
