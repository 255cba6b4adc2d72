"""`samoyed report`: accuracy of float twin, Brevitas QAT, reference and a backend."""

from __future__ import annotations


def run(args) -> int:
    from host import report
    from hw import AcceleratorConfig
    config = AcceleratorConfig.parse(args.config)
    results = [report.evaluate(model, args.backend, args.sample, config, args.data_dir)
               for model in args.model]
    paths = report.write(results, args.out or args.model[0])
    print(report.markdown(results))
    print("wrote " + ", ".join(str(p) for p in paths))
    exact = all(r["agreement"]["backend_vs_reference_exact"] for r in results)
    return 0 if exact else 1


def register(sub, formatter) -> None:
    p = sub.add_parser("report", formatter_class=formatter,
                       help="accuracy of every level side by side, with cycles per layer",
                       description="Accuracy on the test split of the float twin, the Brevitas "
                                   "QAT net, cm.reference and a backend; agreement between "
                                   "levels; modelled cycles and utilization per layer. Writes "
                                   "report.md, report.json and PNG plots.")
    p.add_argument("--model", action="append", required=True, metavar="DIR",
                   help="a `samoyed train` directory; repeat for an accuracy-vs-bits plot")
    p.add_argument("--backend", default="auto",
                   help="sim, torch[:cpu|:cuda], board:URL or auto")
    p.add_argument("--sample", type=int, default=None,
                   help="run the backend on the first N test images only (default: all)")
    p.add_argument("--config", default="8x8", help="accelerator config, ROWSxCOLS")
    p.add_argument("--data-dir", default=None, help="directory holding the data set's files")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: the first model's directory)")
    p.set_defaults(func=run)
