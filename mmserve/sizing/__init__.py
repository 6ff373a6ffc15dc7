"""What a model costs on a GPU, from its architecture config alone: parameter counts built on the
meta device (`params`) and the pieces families compose into their memory estimates (`estimates`).

Below the runners and the planner: each family's `estimate` uses these, and the planner
(`mmserve.plan`) sums the estimates into a placement. Imports no model library until asked to count.
"""
