// Glue for live runs (src/live.rs): the WebSocket of `GET /api/v1/run/live` and the xterm.js
// terminal that shows its output. xterm.js comes from npm (@xterm/xterm), copied by Trunk to
// /xterm; its ES module is imported on first use (its UMD build would meet Monaco's AMD loader).

let loading;

/** Loads xterm.js and its stylesheet once; resolves to the `Terminal` class. */
export function loadTerminal() {
  if (!loading) {
    const css = document.createElement('link');
    css.rel = 'stylesheet';
    css.href = '/xterm/xterm.css';
    document.head.appendChild(css);
    loading = import('/xterm/xterm.mjs').then((module) => module.Terminal);
  }
  return loading;
}

const THEMES = {
  light: { background: '#fbfbfb', foreground: '#1f2328', cursor: '#1f2328', selectionBackground: '#c8d7f5' },
  dark: { background: '#15171a', foreground: '#e6e6e6', cursor: '#e6e6e6', selectionBackground: '#3a4a6a' },
};

/** A read-only terminal in `element` (the app has its own input box for stdin). */
export async function openTerminal(element, dark, label) {
  const Terminal = await loadTerminal();
  const term = new Terminal({
    convertEol: true,
    disableStdin: true,
    cursorBlink: false,
    fontSize: 13,
    rows: 16,
    scrollback: 5000,
    screenReaderMode: true,
    theme: dark ? THEMES.dark : THEMES.light,
  });
  term.open(element);
  const textarea = element.querySelector('textarea');
  if (textarea) {
    textarea.setAttribute('aria-label', label);
  }
  return term;
}

/** `bytes` is a view of the app's memory, valid only during the call: xterm.js keeps a copy. */
export function termWrite(term, bytes) {
  term.write(bytes.slice());
}

export function termWriteText(term, text) {
  term.write(text);
}

export function termDispose(term) {
  term.dispose();
}

/**
 * Opens the live socket and sends `first` (the request, as bytes: the archive form). Text
 * messages go to `onText`, binary ones (the archive-form answer) to `onBinary`; `onClose(code,
 * reason)` when it ends, however it ends.
 */
export function openSocket(path, firstView, onText, onBinary, onClose) {
  // A view of the app's memory, valid only during this call: the socket sends it later.
  const first = firstView.slice();
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${scheme}//${location.host}${path}`);
  ws.binaryType = 'arraybuffer';
  // Messages sent while the socket connects wait for it (the request goes first).
  ws.queued = [];
  ws.onopen = () => {
    ws.send(first);
    for (const text of ws.queued) {
      ws.send(text);
    }
    ws.queued = [];
  };
  ws.onmessage = (event) => {
    if (typeof event.data === 'string') {
      onText(event.data);
    } else {
      onBinary(new Uint8Array(event.data));
    }
  };
  ws.onclose = (event) => onClose(event.code, event.reason || '');
  return ws;
}

/** Sends a text message (queued while connecting); false once the socket is closing. */
export function socketSend(ws, text) {
  if (ws.readyState === WebSocket.CONNECTING) {
    ws.queued.push(text);
    return true;
  }
  if (ws.readyState !== WebSocket.OPEN) {
    return false;
  }
  ws.send(text);
  return true;
}

export function socketClose(ws) {
  ws.close(1000);
}
