"""Progressive distillation against plain few-step sampling (Salimans and Ho, arXiv:2202.00512).

Trains a diffusion teacher within a time budget (or reuses its run), then halves its Euler steps
round by round (START -> START/2 -> ...), each student trained for its own budget on the same
data, starting from the previous model. Each round judges the student at its steps beside the
teacher sampled with the same number of Euler steps: the baseline a student has to beat, since
both cost the same network calls. Judged as bench_diffusion_steps.py judges (classifier AUCs,
S(E_tot/E_inc), FPD, CFD, time per shower at batch 10,000).

Run: .venv/bin/python benchmarks/bench_distillation.py --geometry ds1-photons --teacher-minutes 10 \
    --start-steps 16 --rounds 2 --minutes 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import diffusion_overrides, sample_and_judge, selected_epoch, simulated_data, tagged, write_result

from calosurrogate.models import build_surrogate, load_surrogate
from calosurrogate.sampling import conditions_from_file
from calosurrogate.simulate import get_detector
from calosurrogate.training import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--geometry", default="ds1-photons")
    parser.add_argument("--teacher-minutes", type=float, default=10.0)
    parser.add_argument("--start-steps", type=int, default=16, help="the teacher's Euler steps before distillation")
    parser.add_argument("--rounds", type=int, default=2, help="halvings: 16 with 2 rounds gives 8, then 4")
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget of each student")
    parser.add_argument("--lr", type=float, default=2e-4, help="students start from a trained model: a gentler rate")
    parser.add_argument("--n-train", type=int, default=50_000)
    parser.add_argument("--n-reference", type=int, default=50_000)
    parser.add_argument("--n-eval", type=int, default=10_000, help="judge on the first N reference showers")
    parser.add_argument("--workdir", default="benchmarks/work")
    parser.add_argument("--set", dest="assignments", action="append", default=[], help="teacher's model.KEY=VALUE")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    if args.start_steps >> args.rounds < 1:
        parser.error(f"{args.start_steps} steps cannot be halved {args.rounds} times")
    import torch

    from calosurrogate.devices import resolve_precision

    precision = resolve_precision("auto", torch.device("cpu"))
    overrides = diffusion_overrides(args.assignments)
    detector = get_detector(args.geometry)
    train_file, reference = simulated_data(args.geometry, args.workdir, args.n_train, args.n_reference)
    name = tagged(f"distillation_{args.geometry}", args.tag)
    work = Path(args.workdir) / name.replace("_", "-")

    def budget(minutes: float, lr: float) -> TrainConfig:
        return TrainConfig(
            epochs=1000, batch_size=256, learning_rate=lr, precision=precision, max_minutes=minutes, seed=1
        )

    teacher_run = work / "teacher"
    if not (teacher_run / "model.pt").exists():
        model = build_surrogate("diffusion", detector.geometry, overrides)
        train(model, train_file, teacher_run, budget(args.teacher_minutes, 1e-3), force=True)
    teacher = load_surrogate(teacher_run / "model.pt")
    conditions = conditions_from_file(reference, teacher)[: args.n_eval]

    def judge(model, steps: int, role: str) -> dict:
        model.configure_sampling(sampler="euler", steps=steps)
        row = {"steps": steps, "model": role,
               **sample_and_judge(model, conditions, reference, work / f"generated_{role}_{steps}.h5", "fp32", args.n_eval)}  # fmt: skip
        print(row, flush=True)
        return row

    rows = [judge(teacher, args.start_steps, "teacher")]
    rounds = []
    previous, steps = teacher, args.start_steps
    for k in range(1, args.rounds + 1):
        steps //= 2
        run = work / f"student{k}"
        if not (run / "model.pt").exists():
            result = train(previous.distilled(steps), train_file, run, budget(args.minutes, args.lr), force=True)
            rounds.append({"round": k, "steps": steps, "epochs": result.epochs_done,
                           "selected_epoch": selected_epoch(run, adversarial=False)})  # fmt: skip
        student = load_surrogate(run / "model.pt")
        rows += [judge(teacher, steps, "teacher"), judge(student, steps, f"student{k}")]
        previous = student
    data = {"geometry": args.geometry, "sampler": "euler", "teacher_minutes": args.teacher_minutes,
            "student_minutes": args.minutes, "student_lr": args.lr, "train_precision": precision,
            "teacher_selected_epoch": selected_epoch(teacher_run, adversarial=False), "rounds": rounds,
            "model_config": teacher.checkpoint_dict()["config"], "n_reference": len(conditions),
            "classifier_runs": 1, "threads": torch.get_num_threads(), "tag": args.tag, "results": rows}  # fmt: skip
    command = " ".join(["python benchmarks/bench_distillation.py", *sys.argv[1:]])
    print("wrote", write_result(name, data, command))


if __name__ == "__main__":
    main()
