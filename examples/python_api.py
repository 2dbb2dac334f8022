import sys

import wtflow


def func():
    print("STDOUT")
    print("STDERR", file=sys.stderr)


def func_process_stream(artifact: wtflow.Artifact):
    print(f"processing {artifact.name}: {artifact.data}")


def main():
    n1 = wtflow.Node(name="Node 1", executable=wtflow.PyFunc(func=func))
    n2 = wtflow.Node(name="Node 2", executable=wtflow.PyFunc(func=func_process_stream, args=(n1.stdout_artifact,)))
    n3 = wtflow.Node(name="Node 3", executable=wtflow.PyFunc(func=func_process_stream, args=(n1.stderr_artifact,)))
    wf = wtflow.Workflow(
        name="WTFLOW Example",
        root=wtflow.Node(name="Root Node", executable=wtflow.Command("echo Starting workflow"), children=[n1, n2, n3]),
    )
    engine = wtflow.Engine(wf)
    return engine.run()


if __name__ == "__main__":
    raise SystemExit(main())
