// Glue between the Rust app (src/monaco.rs) and Monaco's AMD build, which Trunk copies from
// node_modules/monaco-editor/min/vs to /vs. Only what the app uses is exposed.

let loading;

/** Loads /vs/loader.js and the editor once; resolves when `monaco` is ready. */
export function loadMonaco() {
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement('script');
      script.src = '/vs/loader.js';
      script.onload = () => {
        globalThis.require.config({ paths: { vs: '/vs' } });
        globalThis.require(['vs/editor/editor.main'], () => resolve(), reject);
      };
      script.onerror = () => reject(new Error('could not load the editor (/vs/loader.js)'));
      document.head.appendChild(script);
    });
  }
  return loading;
}

/** Creates an editor in `element`; `onChange(text)` follows every edit, `onRun()` is Ctrl/Cmd+Enter. */
export function createEditor(element, value, language, readOnly, label, onChange, onRun) {
  const editor = monaco.editor.create(element, {
    value,
    language,
    readOnly,
    ariaLabel: label,
    automaticLayout: true,
    minimap: { enabled: false },
    scrollBeyondLastLine: false,
    // The default dims the number of the line after a final newline, below contrast minimums.
    renderFinalNewline: 'on',
    fontSize: 14,
    tabSize: 4,
  });
  editor.onDidChangeModelContent(() => onChange(editor.getValue()));
  editor.addCommand(monaco.KeyMod.CtrlCmd | monaco.KeyCode.Enter, () => onRun());
  return editor;
}

export function setLanguage(editor, language) {
  monaco.editor.setModelLanguage(editor.getModel(), language);
}

export function setTheme(theme) {
  monaco.editor.setTheme(theme);
}

/** A read-only side-by-side diff editor in `element` (inline where the space is narrow). */
export function createDiffEditor(element, label) {
  const diff = monaco.editor.createDiffEditor(element, {
    readOnly: true,
    originalEditable: false,
    automaticLayout: true,
    renderSideBySide: true,
    useInlineViewWhenSpaceIsLimited: true,
    renderSideBySideInlineBreakpoint: 700,
    minimap: { enabled: false },
    scrollBeyondLastLine: false,
    renderFinalNewline: 'on',
    fontSize: 13,
  });
  // Each side is an editor of its own, named for screen readers.
  diff.getOriginalEditor().updateOptions({ ariaLabel: `${label}: A, the first setup` });
  diff.getModifiedEditor().updateOptions({ ariaLabel: `${label}: B, the second setup` });
  return diff;
}

/** Shows `original` against `modified` in a diff editor; the previous texts' models go. */
export function setDiffTexts(diff, original, modified, language) {
  const old = diff.getModel();
  diff.setModel({
    original: monaco.editor.createModel(original, language),
    modified: monaco.editor.createModel(modified, language),
  });
  if (old) {
    old.original.dispose();
    old.modified.dispose();
  }
}

/** Disposes a diff editor and its models. */
export function disposeDiffEditor(diff) {
  const model = diff.getModel();
  diff.dispose();
  if (model) {
    model.original.dispose();
    model.modified.dispose();
  }
}

// ---- Diagnostics and the assembly pane (src/components/diagnostics.rs, asm_pane.rs) ----------

const SEVERITY = { error: 8, warning: 4, info: 2, note: 1 };

/**
 * Shows diagnostics as markers (a squiggle with the message on hover) on the editor's text.
 * `json`: `[{line, column, end_line?, end_column?, severity, message}]`, 1-based; column 0 marks
 * the whole line, a missing end the word at the column.
 */
export function setDiagnostics(editor, json) {
  const model = editor.getModel();
  if (!model) return;
  const lines = model.getLineCount();
  const markers = JSON.parse(json)
    .filter((d) => d.line >= 1 && d.line <= lines)
    .map((d) => {
      const max = model.getLineMaxColumn(d.line);
      let startColumn = d.column > 0 ? Math.min(d.column, max) : model.getLineFirstNonWhitespaceColumn(d.line) || 1;
      let endLineNumber = d.end_line ?? d.line;
      let endColumn = d.end_column;
      if (d.column === 0) {
        endLineNumber = d.line;
        endColumn = max;
      } else if (!endColumn || (endLineNumber === d.line && endColumn <= startColumn)) {
        const word = model.getWordAtPosition({ lineNumber: d.line, column: startColumn });
        endColumn = word ? word.endColumn : Math.min(startColumn + 1, max);
      }
      if (endColumn <= startColumn && endLineNumber === d.line) {
        // An empty line or a column past its end: mark the line.
        startColumn = 1;
        endColumn = Math.max(max, 2);
      }
      return {
        startLineNumber: d.line,
        startColumn,
        endLineNumber: Math.min(endLineNumber, lines),
        endColumn,
        severity: SEVERITY[d.severity] ?? 8,
        message: d.message,
        source: d.source ?? '',
      };
    });
  monaco.editor.setModelMarkers(model, 'pe', markers);
}

/** Puts the cursor at line:column (column 0: the line's first character), shows it and focuses. */
export function revealPosition(editor, line, column) {
  const position = { lineNumber: line, column: Math.max(column, 1) };
  editor.setPosition(position);
  editor.revealPositionInCenterIfOutsideViewport(position);
  editor.focus();
}

/** Scrolls line into view unless it is already visible. */
export function revealLine(editor, line) {
  editor.revealLineInCenterIfOutsideViewport(line);
}

/**
 * Whole-line decorations, one set per `key` (a later call with the same key replaces it).
 * `json`: `[[line, className], ...]`.
 */
export function setLineClasses(editor, key, json) {
  editor.peDecorations ??= {};
  const collection = (editor.peDecorations[key] ??= editor.createDecorationsCollection());
  collection.set(
    JSON.parse(json).map(([line, className]) => ({
      range: new monaco.Range(line, 1, line, 1),
      options: { isWholeLine: true, className, linesDecorationsClassName: `${className}-gutter` },
    })),
  );
}

/**
 * Calls `callback(line)` with the line the person points at: the hovered line while the mouse
 * is over the text, else the cursor's line (0 when the editor has neither).
 */
export function onLineFocus(editor, callback) {
  let cursor = 0;
  let hover = 0;
  let last = -1;
  const report = () => {
    const line = hover || cursor;
    if (line !== last) {
      last = line;
      callback(line);
    }
  };
  editor.onDidChangeCursorPosition((e) => {
    cursor = e.position.lineNumber;
    report();
  });
  editor.onMouseMove((e) => {
    hover = e.target?.position?.lineNumber ?? 0;
    report();
  });
  editor.onMouseLeave(() => {
    hover = 0;
    report();
  });
}
