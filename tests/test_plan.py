"""tsekit.plan: one planner for build, the ablation grid, load_model and swap; torch-free; `+` = `,`."""

from __future__ import annotations

import copy
import itertools
import json
import subprocess
import sys
from typing import Any

import pytest

import tsekit
from tsekit.engine.ablation import expand_grid, split_values
from tsekit.engine.experiment import load_config
from tsekit.errors import PlacementError, TsekitError
from tsekit.plan import ModelPlan, plan, plan_from_spec
from tsekit.registry import get_registry

REQUESTS = ["default", "first", "last", "all", "none", "0+1", "1,0", "every:2", "-1", "2+last", "7"]
"""Adaptation-layer requests crossed with every combination (``7`` is out of range for every tiny backbone)."""


def _builtin(kind: str) -> list[Any]:
    return [s for s in get_registry().list(kind) if s.provider.distribution == "tsekit"]


def _encoders() -> list[tuple[str, dict[str, Any]]]:
    """Every built-in encoder with its tiny preset's options (where it has one), and precomputed embeddings
    whose size equals some sites' channel dim, so that projection-free fusions fit somewhere."""
    out = [(s.name, dict(s.presets.get("tiny", {}))) for s in _builtin("encoder")]
    return [*out, ("precomputed", {"embedding_dim": 16}), ("precomputed", {"embedding_dim": 32})]


def _fusions() -> list[tuple[str | None, dict[str, Any]]]:
    """The backbone paper's fusion (None), every built-in fusion, and the projection-free variant of those
    that have one."""
    out: list[tuple[str | None, dict[str, Any]]] = [(None, {}), *((s.name, {}) for s in _builtin("fusion"))]
    fields = {s.name: {f["name"] for f in s.describe()["config"]} for s in _builtin("fusion")}
    return [*out, *((name, {"project": False}) for name, names in fields.items() if "project" in names)]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _args(m: dict[str, Any]) -> dict[str, Any]:
    """What ``tsekit train`` builds a config's model with (tsekit.engine.experiment.train)."""
    return {"preset": m["preset"], "encoder_options": m["encoder_options"], "fusion_options": m["fusion_options"],
            "backbone_options": m["backbone_options"]}


def test_grid_pruning_and_build_agree_on_every_builtin_combination() -> None:
    """Every encoder × fusion × backbone (tiny) × request: a cell the grid keeps is one ``build`` makes (the
    planner's plan of it, and a real model for one cell per fusion × backbone × request and per encoder); a
    cell the grid prunes is one ``build`` refuses, with the grid's reason as its message."""
    backbones = [s.name for s in _builtin("backbone")]
    base = load_config(None, {"model": {"preset": "tiny"}})
    kept: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}
    refused = 0
    for (enc, e_opts), (fus, f_opts) in itertools.product(_encoders(), _fusions()):
        config = copy.deepcopy(base)
        config["model"].update(encoder_options=e_opts, fusion_options=f_opts)
        m = config["model"]
        for bb, request in itertools.product(backbones, REQUESTS):
            cells, pruned = expand_grid(config, encoders=[enc], fusions=[fus] if fus else [], backbones=[bb],
                                        adapt_layers=[request])
            assert len(cells) + len(pruned) == 1
            where = f"{enc}{e_opts}/{fus}{f_opts}/{bb}@{request}"
            if pruned:
                with pytest.raises(TsekitError) as refusal:
                    tsekit.build(enc, fus, bb, request, **_args(m))
                assert _one_line(refusal.value) == pruned[0].reason, where
                refused += 1
                continue
            cell = cells[0]
            cm = cell.train_config["model"]
            cell_plan = plan(cm["encoder"], cm["fusion"], cm["backbone"], cm["adapt_layers"], **_args(cm))
            assert cell_plan == plan(enc, fus, bb, request, **_args(m)), where
            assert cell_plan.site_names == cell.sites and cell_plan.fusion == cell.fusion, where
            key = (json.dumps(f_opts), fus, bb, request)
            if key not in kept or enc == "precomputed":  # the cheapest encoder builds the fusion × backbone cells
                kept[key] = (where, cm)
            kept.setdefault((enc, json.dumps(e_opts)), (where, cm))
    assert refused and len(kept) > 100  # both kinds of cell occur
    for where, cm in kept.values():
        model = tsekit.build(cm["encoder"], cm["fusion"], cm["backbone"], cm["adapt_layers"], **_args(cm))
        cell_plan = plan(cm["encoder"], cm["fusion"], cm["backbone"], cm["adapt_layers"], **_args(cm))
        assert model.spec == cell_plan.spec(), where
        assert [s.name for s in model.sites] == list(cell_plan.site_names) and len(model.fusions) == len(model.sites)
        assert model.sample_rate == cell_plan.sample_rate and model.embedding_dim == cell_plan.embedding_dim, where
        if model.sites:
            assert (model.parameter_counts()["fusion"] == 0) == cell_plan.parameter_free, where


def test_plus_comma_and_lists_give_one_plan() -> None:
    same = ["0+7", "0,7", "7+0", " 0 , tcn.7 ", "tcn.0+7", ["tcn.0", "tcn.7"], [0, 7], ["0+7"], ("first", "7")]
    plans = [plan("dvector", "film", "speakerbeam", request) for request in same]
    assert all(p == plans[0] for p in plans) and plans[0].site_names == ("tcn.0", "tcn.7")
    assert plans[0].adapt_layers == "tcn.0+tcn.7"
    model = tsekit.build("precomputed", "film", "speakerbeam", "0+3", preset="tiny")
    assert model.spec.adapt_layers == ["tcn.0", "tcn.3"]
    # the ablate command line: `,` separates cells, `+` joins the sites of one cell
    assert split_values("first,0+7") == ["first", "0+7"]
    base = load_config(None)
    cells, pruned = expand_grid(base, fusions=["film"], adapt_layers=["0+7", "0,7", "tcn.0,tcn.7"])
    assert [c.sites for c in cells] == [("tcn.0", "tcn.7")]
    assert len(pruned) == 2 and all("same cell as" in p.reason for p in pruned)


def test_plan_is_what_build_decides() -> None:
    p = tsekit.plan_model("dvector", None, "speakerbeam", preset="tiny")
    assert isinstance(p, ModelPlan) and p == tsekit.plan.plan("dvector", None, "speakerbeam", preset="tiny")
    assert "tsekit.plan" in tsekit.PUBLIC_MODULES and "plan_model" in tsekit.__all__
    assert (p.fusion, p.site_names, p.sample_rate, p.embedding_dim) == ("multiply", ("tcn.1",), 8000, 256)
    assert p.providers == {"backbone": "speakerbeam:speakerbeam", "encoder": "dvector:dvector",
                           "fusion": "fusions:multiply"}
    assert not p.parameter_free and plan("precomputed", "multiply", "speakerbeam", "none").parameter_free
    assert plan_from_spec(p.spec()) == p == plan_from_spec(json.loads(json.dumps(p.spec().__dict__)))
    none = plan("precomputed", None, "sepselect", preset="tiny")  # no default site: the empty list round-trips
    assert none.sites == () and none.spec().adapt_layers == [] and plan_from_spec(none.spec()) == none
    projected = plan("ecapa", "add", "speakerbeam", encoder_preset="tiny", encoder_projection_dim=24, preset="tiny")
    assert (projected.encoder_embedding_dim, projected.embedding_dim, projected.encoder_projection_dim) == (192, 24, 24)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("dvector", "multiply", "speakerbeam"), {"preset": "tiny", "fusion_options": {"project": False}},
         PlacementError, "fusion 'multiply' needs the embedding dim (256) to equal the channel dim of site 'tcn.1' (32)"),
        (("precomputed", "film", "voicefilter", "all"), {"preset": "tiny", "share_fusion": True},
         PlacementError, "share_fusion needs every chosen site to have the same channel dim and layout"),
        (("ecapa", "add", "speakerbeam"), {"preset": "tiny", "encoder_projection_dim": 0},
         TsekitError, "encoder_projection_dim must be positive, got 0"),
        (("precomputed", "film", "speakerbeam", "0+9"), {"preset": "tiny"},
         PlacementError, "adaptation layer 9 is out of range: this backbone has 4 sites (0..3)"),
        ((3, "film", "speakerbeam"), {}, TsekitError, "encoder must be a registered name, got int"),
    ],
)
def test_build_refuses_with_the_planners_message(args: tuple, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error) as planned:
        plan(*args, **kwargs)
    with pytest.raises(error) as built:
        tsekit.build(*args, **kwargs)
    assert str(planned.value) == str(built.value)
    assert message in str(built.value)


def test_the_planner_imports_no_torch() -> None:
    code = (
        "import sys, tsekit.plan\n"
        "p = tsekit.plan.plan('dvector', None, 'speakerbeam', '0+7')\n"
        "q = tsekit.plan_model('ecapa', 'film', 'voicefilter', 'all', preset='tiny', encoder_preset='tiny')\n"
        "assert p.site_names == ('tcn.0', 'tcn.7') and q.embedding_dim == 192\n"
        "assert tsekit.plan.plan_from_spec(p.spec()) == p\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n"
        "assert not bad, bad[:5]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
