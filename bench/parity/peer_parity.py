#!/usr/bin/env python3
"""Ultralytics 8.1.47's half of the parity harness (run.sh beside this file runs both halves).

  peer_parity.py init  --yolod DIR/init.state --nc N --seed S
      builds Ultralytics' DetectionModel as its trainer does for seed S and compares every
      parameter and buffer with yolod's initial state
  peer_parity.py step  --state DIR/init.state --yolod STEP_FILE
      loads yolod's initial state, runs the batch yolod used through Ultralytics' forward pass,
      v8DetectionLoss and backward, and compares the outputs, loss terms, assigner results,
      BatchNorm statistics and gradients with yolod's
  peer_parity.py train --state DIR/init.state --data DATA_YAML --out PREFIX [--epochs E ...]
      trains with Ultralytics' own trainer from yolod's initial state (augmentation off) and
      writes the training model and the EMA after each epoch of --save-epochs to PREFIX.eN.pt
  peer_parity.py diverge --epochs 1 2 ... --pair LABEL=A,B ...
      how far apart two runs' weights are after each epoch: A and B are file names in which
      {} stands for the epoch
  peer_parity.py augment --data DATA_YAML --out FILE [--imgsz 320 --batch 16 --samples 2048]
      the same statistics of Ultralytics' training samples as `parity_tool augment` writes
  peer_parity.py augstats --yolod FILE --peer FILE
      compares the two: a two-sample test per quantity
  peer_parity.py batches --data DATA_YAML --out DIR [--epochs 30 --imgsz 320 --batch 16 --seed 0]
      every training batch of a whole run from Ultralytics' loader, as its trainer draws them
      (mosaic closing at close_mosaic), in the files `parity_tool batches` writes
  peer_parity.py replay --batches DIR --data DATA_YAML --project DIR [--seed 0 --epochs 30 ...]
      Ultralytics' trainer, from its own initial weights for the seed, trained on the batches
      in DIR instead of its loader's (validation as usual): the same data for both trainers
  peer_parity.py batchloss --weights ULTRALYTICS_PT --batches DIR [DIR ...] [--epochs 2 6 10]
      the loss terms of one trained model (BatchNorm frozen) over the batches of each folder:
      how hard each pipeline's samples are for the same model, without training's noise
  peer_parity.py plan --yolod FILE --data DATA_YAML [--epochs 2 --batch 16]
      Ultralytics' loader's visiting order and mosaic buffer at every sample, against
      `parity_tool plan`
  peer_parity.py geometry --yolod FILE --data DATA_YAML [--imgsz 320] [--set key=value ...]
      puts the random draws that `parity_tool geometry` recorded through Ultralytics' Mosaic and
      RandomPerspective, RandomHSV and RandomFlip on the same images and compares boxes and
      pixels, case by case
  peer_parity.py val --state FILE --data DATA_YAML [--prefix ema.]
      Ultralytics' validator on weights from a state file (`parity_tool export` of a yolod
      checkpoint), to compare with `yolo-worker val` of the same checkpoint

Differences are printed per layer: rel = |a - b| / |b| in the max norm over the tensor.
Limits (fp32 everywhere): outputs, loss terms and BatchNorm statistics 1e-5; gradients 1e-4; the
assigner's targets 1e-4, since its alignment metric raises the IoU to the 6th power and so
multiplies the outputs' rounding by up to 6.
Needs PYTHONPATH with the Ultralytics sources and Debian's python3-torch (same LibTorch 1.13).
"""
import argparse
import logging
import sys

import torch


def rel(a, b):
    a, b = a.double(), b.double()
    den = b.abs().max().item()
    num = (a - b).abs().max().item()
    return num / den if den > 0 else num


REPORT = None  # --report FILE: every row of every table, layer by layer


def table(title, rows, limit):
    """rows: (name, rel). Prints the worst three and returns the worst value."""
    worst = max((r for _, r in rows), default=0.0)
    print(f"\n{title}: {len(rows)} tensors, worst rel {worst:.2e} (expected <= {limit:.0e})")
    for name, r in sorted(rows, key=lambda x: -x[1])[:3]:
        print(f"  {r:10.2e}  {name}")
    if REPORT:
        with open(REPORT, "a") as f:
            f.write(f"\n{title}\n" + "".join(f"  {r:10.2e}  {name}\n" for name, r in rows))
    return worst


def ultralytics_model(nc):
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import LOGGER

    LOGGER.setLevel(logging.WARNING)  # not "Overriding model.yaml nc=80 with nc=3" each time

    return DetectionModel("yolov8n.yaml", nc=nc, verbose=False)


def train_data(data_yaml, imgsz, batch, settings=()):
    """Ultralytics' training dataset and loader (workers=0, its CPU default) for a data.yaml, with
    key=value training arguments on top of the defaults; (cfg, dataset, loader)."""
    import yaml
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import LOGGER

    LOGGER.setLevel(logging.WARNING)
    extra = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in settings)}
    cfg = get_cfg(overrides={"data": data_yaml, "imgsz": imgsz, "batch": batch, **extra})
    data = check_det_dataset(data_yaml)
    dataset = build_yolo_dataset(cfg, data["train"], batch, data, mode="train", rect=False, stride=32)
    return cfg, dataset, build_dataloader(dataset, batch, 0, shuffle=True, rank=-1)


def cmd_init(a):
    from ultralytics.utils.torch_utils import init_seeds

    init_seeds(a.seed, deterministic=False)  # BaseTrainer: seed + 1 + RANK, with RANK -1
    peer = ultralytics_model(a.nc).state_dict()
    ours = torch.load(a.yolod)
    missing = sorted(set(peer) - set(ours))
    extra = sorted(set(ours) - set(peer))
    if missing or extra:
        print(f"names differ: missing in yolod {missing[:5]}, only in yolod {extra[:5]}")
        return 1
    rows = [(k, rel(ours[k], v)) for k, v in peer.items() if v.is_floating_point()]
    same = sum(torch.equal(ours[k], v) for k, v in peer.items())
    print(f"initial state, seed {a.seed}: {len(peer)} tensors, {same} bit-identical")
    if same == len(peer):
        return 0
    table("initial weights and buffers", rows, 0)
    return 1


def cmd_step(a):
    from ultralytics.cfg import get_cfg
    from ultralytics.utils.loss import v8DetectionLoss

    d = torch.load(a.yolod)
    init = torch.load(a.state)
    nc = init["model.22.cv3.0.2.bias"].numel()
    model = ultralytics_model(nc)
    model.load_state_dict(init)
    model.args = get_cfg()  # the default hyper-parameters: box 7.5, cls 0.5, dfl 1.5
    model.train()
    img = d["batch.img"].float() / 255
    batch = {"img": img, "batch_idx": d["batch.batch_idx"], "cls": d["batch.cls"].view(-1, 1),
             "bboxes": d["batch.bboxes"]}
    crit = v8DetectionLoss(model)
    captured = {}
    assign = crit.assigner.forward

    def capture(*args):
        out = assign(*args)
        captured["bboxes"], captured["scores"], captured["fg"] = (t.clone() for t in out[1:4])
        return out

    crit.assigner.forward = capture
    preds = model(img)
    loss, items = crit(preds, batch)
    loss.backward()

    print(f"batch: {tuple(img.shape)}, {batch['cls'].shape[0]} targets")
    limit_out, limit_grad = 1e-5, 1e-4
    worst = {}
    worst["outputs"] = table("raw outputs per level",
                             [(f"level {i} (stride {8 << i})", rel(d[f"out.{i}"], p.detach()))
                              for i, p in enumerate(preds)], limit_out)
    rows = [(n, rel(d["loss.items"][i], items[i])) for i, n in enumerate(("box", "cls", "dfl"))]
    rows.append(("total (x batch)", rel(d["loss.total"], loss.detach())))
    worst["loss"] = table("loss terms", rows, limit_out)
    print("  yolod " + " ".join(f"{v:.6f}" for v in d["loss.items"].tolist()) +
          "\n  peer  " + " ".join(f"{v:.6f}" for v in items.tolist()))
    fg_ours, fg_peer = d["assign.fg_mask"].bool(), captured["fg"].bool()
    mismatch = (fg_ours != fg_peer).sum().item()
    print(f"\nassigner: {fg_peer.sum().item()} foreground anchors in Ultralytics, "
          f"{fg_ours.sum().item()} in yolod, {mismatch} differ")
    both = fg_ours & fg_peer
    rows = [("target_scores", rel(d["assign.target_scores"], captured["scores"])),
            ("target_bboxes (foreground)", rel(d["assign.target_bboxes"][both], captured["bboxes"][both]))]
    worst["assigner"] = max(table("assigner targets", rows, limit_grad), float(mismatch))
    buffers = dict(model.named_buffers())
    rows = [(k, rel(d["after." + k], v)) for k, v in buffers.items() if v.is_floating_point()]
    worst["bn"] = table("BatchNorm running statistics after the forward pass", rows, limit_out)
    rows = []
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        key = "grad." + name
        if key not in d:
            rows.append((name + " (no gradient in yolod)", float("inf")))
            continue
        rows.append((name, rel(d[key], p.grad)))
    worst["gradients"] = table("gradients per parameter", rows, limit_grad)
    ok = all(worst[k] <= limit_out for k in ("outputs", "loss", "bn")) and \
        worst["assigner"] <= limit_grad and worst["gradients"] <= limit_grad
    print("\nsummary: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()) +
          (" -- within the limits" if ok else " -- OUTSIDE the limits"))
    return 0 if ok else 1


def cmd_train(a):
    from ultralytics import YOLO
    from ultralytics.models.yolo.detect import DetectionTrainer

    init = torch.load(a.state)
    save_epochs = set(a.save_epochs)

    class FromYolodInit(DetectionTrainer):
        def get_model(self, cfg=None, weights=None, verbose=True):
            model = super().get_model(cfg=cfg, weights=None, verbose=False)
            model.load_state_dict(init)
            return model

    def on_train_epoch_end(tr):
        if tr.epoch + 1 in save_epochs:
            state = {"model." + k: v.detach().clone().float() for k, v in tr.model.state_dict().items()}
            state.update({"ema." + k: v.detach().clone().float() for k, v in tr.ema.ema.state_dict().items()})
            torch.save(state, f"{a.out}.e{tr.epoch + 1}.pt")

    torch.set_num_threads(a.threads)
    model = YOLO("yolov8n.yaml")
    model.add_callback("on_train_epoch_end", on_train_epoch_end)
    model.train(trainer=FromYolodInit, data=a.data, imgsz=a.imgsz, batch=a.batch, epochs=a.epochs,
                workers=0, device="cpu", cache=False, amp=False, plots=False, val=False,
                pretrained=False, project=a.project, name="parity", exist_ok=True, seed=0,
                verbose=False, mosaic=0.0, mixup=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0,
                degrees=0.0, translate=0.0, scale=0.0, shear=0.0, perspective=0.0, flipud=0.0,
                fliplr=0.0, close_mosaic=0, warmup_epochs=a.warmup_epochs)
    return 0


def cmd_diverge(a):
    import statistics

    pairs = [(label, *files.split(",")) for label, files in (p.split("=", 1) for p in a.pair)]
    print("relative difference of the EMA's weights, per tensor: median / max over the tensors")
    print(f"{'epoch':>6}" + "".join(f"{label:>32}" for label, _, _ in pairs))
    for e in a.epochs:
        cells = []
        for _, fa, fb in pairs:
            x, y = torch.load(fa.format(e)), torch.load(fb.format(e))
            r = [rel(x[k], v) for k, v in y.items()
                 if k.startswith("ema.") and v.is_floating_point() and "num_batches" not in k]
            cells.append(f"{statistics.median(r):.1e} / {max(r):.1e}")
        print(f"{e:>6}" + "".join(f"{c:>32}" for c in cells))
    return 0


def sample_stats(batches, samples):
    """Per-sample statistics of training batches, as parity_tool augment computes them."""
    import cv2
    import numpy as np

    objects, widths, heights, colour = [], [], [], []
    for batch in batches:
        img, idx, boxes = batch["img"], batch["batch_idx"].long(), batch["bboxes"]
        for i in range(img.shape[0]):
            if len(objects) >= samples:
                return objects, widths, heights, colour
            mine = idx == i
            objects.append(float(mine.sum()))
            widths += boxes[mine, 2].tolist()
            heights += boxes[mine, 3].tolist()
            rgb = np.ascontiguousarray(img[i].permute(1, 2, 0).numpy())
            hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
            colour.append([*cv2.mean(rgb)[:3], *cv2.mean(hsv)[:3]])
    return objects, widths, heights, colour


def cmd_augment(a):
    from ultralytics.utils.torch_utils import init_seeds

    init_seeds(a.seed)  # as the trainer seeds (seed + 1 + RANK); augmentation draws from it
    _, _, loader = train_data(a.data, a.imgsz, a.batch, a.set)

    def epochs():
        while True:
            yield from loader

    objects, widths, heights, colour = sample_stats(epochs(), a.samples)
    torch.save({"objects": torch.tensor(objects), "box_w": torch.tensor(widths),
                "box_h": torch.tensor(heights), "colour": torch.tensor(colour)}, a.out)
    print(f"augment: {len(objects)} samples, {len(widths)} boxes")
    return 0


def cmd_augstats(a):
    import numpy as np
    from scipy import stats

    ours, peer = torch.load(a.yolod), torch.load(a.peer)
    rows = []

    def ks(name, x, y):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        r = stats.ks_2samp(x, y)
        rows.append((name, x.mean(), y.mean(), f"KS D={r.statistic:.3f}", r.pvalue, len(x), len(y)))

    # Objects per image are counts: a chi-square test of homogeneity over the counts seen, the
    # sparse tail pooled so that every cell expects at least 5.
    o, p = ours["objects"].numpy().astype(int), peer["objects"].numpy().astype(int)
    top = max(o.max(), p.max())
    table_ = np.array([[np.sum(o == k) for k in range(top + 1)], [np.sum(p == k) for k in range(top + 1)]])
    cells = []
    for k in range(top + 1):
        if cells and table_[:, k].sum() < 10:
            cells[-1] = cells[-1] + table_[:, k]
        else:
            cells.append(table_[:, k].copy())
    while len(cells) > 1 and cells[-1].sum() < 10:
        last = cells.pop()
        cells[-1] = cells[-1] + last
    chi = stats.chi2_contingency(np.array(cells).T)
    rows.append(("objects per image", o.mean(), p.mean(), f"chi2={chi[0]:.1f} ({chi[2]} df)", chi[1], len(o), len(p)))
    # Boxes of one sample are not independent (one mosaic, one scale draw) and the same few
    # hundred objects recur in every epoch, so a test over boxes would count dependent draws as
    # independent and reject even two seeds of one pipeline. The unit is the sample: each
    # sample's mean over its boxes.
    def per_sample(d, f):
        counts = d["objects"].long().tolist()
        values = f(d["box_w"].double(), d["box_h"].double())
        out, at = [], 0
        for c in counts:
            if c:
                out.append(values[at:at + c].mean().item())
            at += c
        return out

    for name, f in (("box width (fraction)", lambda w, h: w), ("box height (fraction)", lambda w, h: h),
                    ("box aspect w/h", lambda w, h: w / h), ("box area (fraction)", lambda w, h: w * h)):
        ks(f"{name}, sample mean", per_sample(ours, f), per_sample(peer, f))
    for c, name in enumerate(("mean R", "mean G", "mean B", "mean H", "mean S", "mean V")):
        ks(f"image {name}", ours["colour"][:, c], peer["colour"][:, c])
    level = 0.01 / len(rows)  # 1 % over the whole table (Bonferroni)
    print(f"{'quantity':<36}{'yolod mean':>11}{'peer mean':>11}  {'test':<24}{'p':>9}  samples")
    for name, m1, m2, test, pv, n1, n2 in rows:
        flag = "" if pv > level else "  DIFFERENT"
        print(f"{name:<36}{m1:>11.4f}{m2:>11.4f}  {test:<24}{pv:>9.3g}  {n1}/{n2}{flag}")
    differ = [r[0] for r in rows if r[4] <= level]
    print(f"\nsame distributions at 1 % over the table (each p > {level:.1e}): "
          + ("yes" if not differ else "no: " + ", ".join(differ)))
    return 0 if not differ else 1


def cmd_batches(a):
    import os
    from ultralytics.utils.torch_utils import init_seeds

    init_seeds(a.seed)
    cfg, dataset, loader = train_data(a.data, a.imgsz, a.batch)
    os.makedirs(a.out, exist_ok=True)
    for epoch in range(a.epochs):
        if epoch == a.epochs - cfg.close_mosaic:  # as BaseTrainer._do_train closes it
            dataset.mosaic = False
            dataset.close_mosaic(hyp=cfg)
            loader.reset()
        d = {}
        for k, b in enumerate(loader):
            d.update({f"img.{k}": b["img"], f"batch_idx.{k}": b["batch_idx"], f"cls.{k}": b["cls"],
                      f"bboxes.{k}": b["bboxes"]})
        torch.save(d, f"{a.out}/e{epoch}.pt")
    print(f"batches: {a.epochs} epochs -> {a.out}")
    return 0


class ReplayLoader:
    """The batches of a folder written by `batches`, one file an epoch, each pass the next epoch."""

    num_workers = 0

    def __init__(self, folder, dataset, first_epoch=0):
        self.folder, self.dataset, self.epoch = folder, dataset, first_epoch
        self.nb = sum(k.startswith("img.") for k in torch.load(f"{folder}/e{first_epoch}.pt"))

    def __len__(self):
        return self.nb

    def __iter__(self):
        yield from self.epoch_batches()
        self.epoch += 1

    def epoch_batches(self):
        d = torch.load(f"{self.folder}/e{self.epoch}.pt")
        for k in range(self.nb):
            yield {"img": d[f"img.{k}"], "batch_idx": d[f"batch_idx.{k}"].view(-1),
                   "cls": d[f"cls.{k}"].view(-1, 1), "bboxes": d[f"bboxes.{k}"]}

    def reset(self):
        pass


def cmd_replay(a):
    from ultralytics import YOLO
    from ultralytics.models.yolo.detect import DetectionTrainer

    class ReplayTrainer(DetectionTrainer):
        def get_dataloader(self, dataset_path, batch_size=16, rank=0, mode="train"):
            loader = super().get_dataloader(dataset_path, batch_size, rank, mode)
            return ReplayLoader(a.batches, loader.dataset) if mode == "train" else loader

        def _close_dataloader_mosaic(self):
            pass  # the batches already say where mosaic closed

    torch.set_num_threads(a.threads)
    model = YOLO("yolov8n.yaml")
    model.train(trainer=ReplayTrainer, data=a.data, imgsz=a.imgsz, batch=a.batch, epochs=a.epochs,
                workers=0, device="cpu", amp=False, plots=False, pretrained=False,
                project=a.project, name=a.name, exist_ok=True, seed=a.seed, verbose=False)
    return 0


def cmd_batchloss(a):
    import statistics
    from ultralytics.cfg import get_cfg

    ckpt = torch.load(a.weights, map_location="cpu")
    model = (ckpt.get("ema") or ckpt["model"]).float()
    model.args = get_cfg()  # the loss gains
    model.train()  # the head's raw outputs, which the loss takes
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    torch.set_num_threads(a.threads)
    print(f"loss terms of {a.weights} per batch, mean ± standard error, epochs {a.epochs}")
    for folder in a.batches:
        items = []
        for e in a.epochs:
            for b in ReplayLoader(folder, None, first_epoch=e).epoch_batches():
                b["img"] = b["img"].float() / 255
                with torch.no_grad():
                    items.append(model.loss(b)[1].tolist())
        cells = []
        for name, column in zip(("box", "cls", "dfl"), zip(*items)):
            se = statistics.stdev(column) / len(column) ** 0.5
            cells.append(f"{name} {statistics.mean(column):.4f} ± {se:.4f}")
        print(f"{folder}: " + ", ".join(cells) + f" ({len(items)} batches)")
    return 0


def cmd_plan(a):
    from ultralytics.data.augment import Mosaic

    ours = torch.load(a.yolod)
    seen = []  # (image, buffer) per sample, in the order the loader made them
    mix = Mosaic.__call__

    def recording(self, labels):  # the sample's image is loaded; its partners are drawn next
        seen.append((index[labels["im_file"]], list(self.dataset.buffer)))
        return mix(self, labels)

    Mosaic.__call__ = recording
    _, dataset, loader = train_data(a.data, 64, a.batch)  # the size does not move the plan
    index = {f: i for i, f in enumerate(dataset.im_files)}
    n, bad = len(dataset), 0
    for e in range(a.epochs):
        seen.clear()
        for _ in loader:
            pass
        order = ours[f"order.{e}"].tolist()
        for p, (image, buffer) in enumerate(seen):
            mine = ours[f"buffer.{e}.{p}"].tolist()
            if image != order[p] or buffer != mine:
                bad += 1
                if bad <= 5:
                    print(f"epoch {e} position {p}: yolod image {order[p]}, buffer {mine[-5:]} (last 5 "
                          f"of {len(mine)}); Ultralytics image {image}, {buffer[-5:]} (of {len(buffer)})")
    print(f"plan: {a.epochs} epochs x {n} samples, {bad} differ in image or buffer")
    return 0 if bad == 0 else 1


def cmd_geometry(a):
    import random
    import numpy as np
    from ultralytics.data.augment import LetterBox, Mosaic, RandomFlip, RandomHSV, RandomPerspective

    ours = torch.load(a.yolod)
    cfg, dataset, _ = train_data(a.data, a.imgsz, 16, a.set)
    mosaic = Mosaic(dataset, imgsz=a.imgsz, p=1.0)

    def scripted(values):  # random.uniform answering the recorded draws, range-checked
        it = iter(values)

        def uniform(lo, hi):
            v = next(it)
            assert min(lo, hi) <= v <= max(lo, hi), (v, lo, hi)
            return v
        return uniform

    def xyxy(labels):
        inst = labels["instances"]
        inst.convert_bbox(format="xyxy")
        return np.concatenate([labels["cls"].reshape(-1, 1), inst.bboxes], 1)

    cases = sorted({int(k.split(".")[1]) for k in ours if k.startswith("draws.")})
    worst_box, worst_px, count_diff, mean_px = 0.0, 0, 0, []
    hsv = RandomHSV(hgain=cfg.hsv_h, sgain=cfg.hsv_s, vgain=cfg.hsv_v)
    flip_ud = RandomFlip(direction="vertical", p=cfg.flipud)
    flip_lr = RandomFlip(direction="horizontal", p=cfg.fliplr)
    uniform, np_uniform, rand = random.uniform, np.random.uniform, random.random
    try:
        for c in cases:
            images = ours[f"images.{c}"].tolist()
            draws = ours[f"draws.{c}"].tolist()
            labels = dataset.get_image_and_label(images[0])
            if len(draws) == 10:  # a mosaic: Ultralytics draws the centre's y first
                labels["mix_labels"] = [dataset.get_image_and_label(i) for i in images[1:]]
                random.uniform = scripted([draws[1], draws[0]])
                labels = mosaic._mix_transform(labels)
                affine = RandomPerspective(degrees=cfg.degrees, translate=cfg.translate,
                                           scale=cfg.scale, shear=cfg.shear,
                                           perspective=cfg.perspective)
                before = xyxy(labels)
                labels["instances"].convert_bbox(format="xywh")
                rest = draws[2:]
            else:
                affine = RandomPerspective(degrees=cfg.degrees, translate=cfg.translate,
                                           scale=cfg.scale, shear=cfg.shear,
                                           perspective=cfg.perspective,
                                           pre_transform=LetterBox(new_shape=(a.imgsz, a.imgsz)))
                before = None
                rest = draws
            random.uniform = scripted(rest)
            labels = affine(labels)
            after = xyxy(labels)
            # Colour, then flips, with yolod's draws: HSV gains from numpy, flips from random.
            tail = ours[f"tail.{c}"].tolist()
            np.random.uniform = lambda lo, hi, n: np.array(tail[:3])
            flips = iter(tail[3:])
            random.random = lambda: next(flips)
            labels["instances"].convert_bbox(format="xywh")
            for t in (hsv, flip_ud, flip_lr):
                labels = t(labels)
            final = xyxy(labels)
            yb, ya = ours[f"before.{c}"].numpy(), ours[f"after.{c}"].numpy()
            if before is not None and len(before) != len(yb):
                print(f"case {c}: {len(yb)} boxes after yolod's mosaic, {len(before)} after Ultralytics'")
            if len(after) != len(ya):
                count_diff += 1
                if count_diff <= 10:
                    print(f"case {c}: yolod keeps {len(ya)} boxes, Ultralytics {len(after)}")
                    print("  yolod", np.round(ya, 2).tolist(), "\n  peer ", np.round(after, 2).tolist())
            elif len(ya):
                worst_box = max(worst_box, float(np.abs(np.sort(ya, 0) - np.sort(after, 0)).max()))
                yf = ours[f"final.{c}"].numpy()
                worst_box = max(worst_box, float(np.abs(np.sort(yf, 0) - np.sort(final, 0)).max()))
            px = np.abs(ours[f"img.{c}"].numpy().astype(int) - labels["img"].astype(int))
            worst_px = max(worst_px, int(px.max()))
            mean_px.append(px.mean())
    finally:
        random.uniform, np.random.uniform, random.random = uniform, np_uniform, rand
    print(f"geometry: {len(cases)} cases, {count_diff} with another number of boxes; worst box "
          f"coordinate difference {worst_box:.4f} px; pixels: worst {worst_px}, "
          f"mean {np.mean(mean_px):.4f}")
    return 0 if count_diff == 0 else 1


def cmd_val(a):
    """Ultralytics' validator on weights from a state file (yolod's, exported)."""
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.utils import LOGGER

    state = torch.load(a.state)
    prefix = a.prefix
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    nc = weights["model.22.cv3.0.2.bias"].numel()
    model = ultralytics_model(nc)
    model.load_state_dict(weights)
    model.names = {i: str(i) for i in range(nc)}
    model.eval()
    LOGGER.setLevel(logging.INFO)
    validator = DetectionValidator(args=dict(data=a.data, imgsz=a.imgsz, batch=a.batch, conf=0.001,
                                             iou=0.7, device="cpu", half=False, plots=False))
    metrics = validator(model=model)
    print({k: round(float(v), 5) for k, v in metrics.items()})
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("init")
    p.add_argument("--yolod", required=True)
    p.add_argument("--nc", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("step")
    p.add_argument("--state", required=True)
    p.add_argument("--yolod", required=True)
    p.add_argument("--report", help="also write every layer's difference to this file")
    p = sub.add_parser("train")
    p.add_argument("--state", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--imgsz", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup-epochs", type=float, default=3.0)
    p.add_argument("--save-epochs", type=int, nargs="+", default=[40])
    p = sub.add_parser("diverge")
    p.add_argument("--epochs", type=int, nargs="+", required=True)
    p.add_argument("--pair", nargs="+", required=True)
    p = sub.add_parser("augment")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--samples", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], help="key=value training arguments")
    p = sub.add_parser("val")
    p.add_argument("--state", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--prefix", default="ema.")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch", type=int, default=32)
    p = sub.add_parser("batches")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("replay")
    p.add_argument("--batches", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--name", default="replay")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("batchloss")
    p.add_argument("--weights", required=True)
    p.add_argument("--batches", nargs="+", required=True)
    p.add_argument("--epochs", type=int, nargs="+", default=[2, 6, 10])
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("plan")
    p.add_argument("--yolod", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p = sub.add_parser("geometry")
    p.add_argument("--yolod", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--set", nargs="*", default=[], help="the key=value arguments yolod was given")
    p = sub.add_parser("augstats")
    p.add_argument("--yolod", required=True)
    p.add_argument("--peer", required=True)
    a = ap.parse_args()
    global REPORT
    REPORT = getattr(a, "report", None)
    torch.set_num_threads(2)
    return {"init": cmd_init, "step": cmd_step, "train": cmd_train, "diverge": cmd_diverge,
            "augment": cmd_augment, "augstats": cmd_augstats, "val": cmd_val,
            "batches": cmd_batches, "replay": cmd_replay, "geometry": cmd_geometry,
            "plan": cmd_plan, "batchloss": cmd_batchloss}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
