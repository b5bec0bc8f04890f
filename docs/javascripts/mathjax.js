// MathJax 3 configuration.
// - Markdown pages: pymdownx.arithmatex ("generic" mode) wraps math in \( ... \) and
//   \[ ... \] inside elements of class "arithmatex".
// - Notebook pages (mkdocs-jupyter): markdown cells keep the notebook's $ ... $ and
//   $$ ... $$, inside elements of class "jp-MarkdownOutput".
// Only those are typeset: an element that has a class is skipped unless the class is one
// of these two, and an element without a class (the <p> of a notebook cell) inherits its
// parent's choice. So a dollar sign in code or navigation is never taken for math.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true
  },
  options: {
    ignoreHtmlClass: "[^ ]+",
    processHtmlClass: "arithmatex|jp-MarkdownOutput"
  }
};

// Material's instant navigation swaps page content without a reload: typeset again.
if (typeof document$ !== "undefined") {
  document$.subscribe(() => {
    if (window.MathJax && MathJax.typesetPromise) {
      MathJax.startup.output.clearCache();
      MathJax.typesetClear();
      MathJax.texReset();
      MathJax.typesetPromise();
    }
  });
}
