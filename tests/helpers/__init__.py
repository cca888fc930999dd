"""What the tests share besides fixtures: dataset builders in the real on-disk layouts
(:mod:`~tests.helpers.datasets`), config composition (:mod:`~tests.helpers.configs`),
networks (:mod:`~tests.helpers.models`), callbacks that signal a run
(:mod:`~tests.helpers.signals`) and the search tests' stand-ins (:mod:`~tests.helpers.search`)."""
