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
