# make demo:  install, then generate a long video with and without fast learning from the committed laptop checkpoint,
#             print the metrics, write out/demo/video.gif (everything under out/; train your own: make train-cpu)
# make test:  install the test needs, run the tests (make test-quick skips the heavy ones)
PY ?= python
CKPT ?= checkpoints/laptop.pt
HW ?= 1
# the teachers' tools (pyproject.toml's `teach` extra, kept equal by tests/test_exercises.py): make notebooks, and the
# test that executes the walkthrough notebook
TEACH = "jupytext>=1.16" "nbclient>=0.10" "ipykernel>=6"

.PHONY: install demo docs-demo train train-cpu train-cpu-more test test-quick bench preview play grade handout walkthrough check \
	notebooks mutants expected

install:
	$(PY) -m pip install -q -r requirements.txt

demo: install
	$(PY) video.py --preview out/world.gif
	$(PY) generate.py --ckpt $(CKPT) --world-seed 200001 --actions "go right*2,go down*2,go up*2,go left*2" --out out/demo
	@echo "the video is out/demo/video.gif: without memory | with memory | ground truth"

# maintainers: refresh the README's picture from a demo run (its bytes depend on the machine's thread count)
docs-demo: demo
	cp out/demo/video.gif docs/demo.gif

# the recipe of checkpoints/tiny.pt (docs/engineering.md): 14.5 minutes on one H100, many hours on a CPU
train: install
	$(PY) train.py --preset tiny --batch 128 --lr 1e-3 --warmup 500 --max-steps 1000 --ema-decay 0.9995 --out runs/tiny-a
	$(PY) train.py --preset tiny --batch 128 --lr 5e-4 --warmup 100 --max-steps 1100 --init runs/tiny-a/ckpt.pt --out runs/tiny
	$(PY) train.py --export runs/tiny/ckpt.pt runs/tiny/tiny.pt
	@echo "trained: runs/tiny/tiny.pt; use it with: make demo CKPT=runs/tiny/tiny.pt"

# what a laptop trains in an hour (docs/world-model.md): the frame autoencoder, then the UNet with the carry-forward
# output on its frozen 16x8x8 latents, on two cores; the export (about 4 MB) carries its autoencoder
train-cpu: install
	$(PY) train.py --preset laptop --stage autoencoder --batch 32 --lr 2e-3 --warmup 0 --max-steps 8000 --threads 2 --out runs/laptop-ae
	$(PY) train.py --preset laptop --autoencoder runs/laptop-ae/ckpt.pt --max-steps 4000 --threads 2 --snapshot-every 500 --out runs/laptop
	$(PY) train.py --export runs/laptop/ckpt.pt runs/laptop/laptop.pt
	@echo "trained: runs/laptop/laptop.pt; use it with: make demo CKPT=runs/laptop/laptop.pt"

# checkpoints/laptop.pt: train-cpu, then 3000 more UNet steps at a lower learning rate (about 31 minutes on two cores)
train-cpu-more: install
	$(PY) train.py --preset laptop --init runs/laptop/ckpt.pt --lr 2e-4 --warmup 0 --max-steps 3000 --threads 2 --snapshot-every 500 --out runs/laptop-long
	$(PY) train.py --export runs/laptop-long/ckpt.pt runs/laptop-long/laptop.pt
	@echo "trained: runs/laptop-long/laptop.pt (the committed checkpoints/laptop.pt)"

# the tests run on two workers (pytest-xdist): each test uses one thread, so a 2-core machine runs two at once
test:
	$(PY) -m pip install -q -r requirements.txt pytest pytest-xdist $(TEACH)
	$(PY) -m pytest -q -n 2 tests

test-quick:
	$(PY) -m pip install -q -r requirements.txt pytest pytest-xdist
	$(PY) -m pytest -q -n 2 -m "not heavy" tests

bench: install
	$(PY) -m lab.bench

preview: install
	$(PY) video.py --preview out/world.gif

play: install
	$(PY) play.py --ckpt $(CKPT)

# classroom (exercises/README.md, exercises/INSTRUCTOR.md). make check HW=5: the visible checks (what students run);
# make grade HW=5 [ROOT=a student's copy]: visible + hidden checks; make grade BATCH=submissions/: every sub-folder of
# submissions/, every assignment, into submissions/grades.csv; make handout [HWS="4 5"] [OUT=out/handout]: the
# student copy; make notebooks: out/notebooks/hw1..7.ipynb and walkthrough.ipynb; make mutants: the mutation test
# (every listed wrong implementation must fail the grading checks); make expected: re-measure the "you should see"
# ranges and pictures (after the classroom's checkpoint changes, exercises/runs/common.py)
check:
	$(PY) -m exercises.check $(HW) $(if $(ROOT),--root $(ROOT),)

grade:
	$(PY) -m exercises.grade $(if $(BATCH),--batch $(BATCH),$(HW) $(if $(ROOT),--root $(ROOT),))

handout:
	$(PY) -m exercises.make_handout $(or $(OUT),out/handout) $(if $(HWS),--hw $(HWS),)

notebooks:
	$(PY) -m pip install -q $(TEACH)
	$(PY) -m exercises.make_notebooks $(or $(OUT),out/notebooks)

mutants: install
	$(PY) -m exercises.mutants --jobs 2

expected: install
	$(PY) -m exercises.runs.measure

walkthrough: install
	$(PY) docs/walkthrough.py $(if $(QUICK),--quick,)
