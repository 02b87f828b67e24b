// Calls to the proxy's own APIs: the API key (sessionStorage, own origin only) and errors.
//
// Every request goes to this page's origin: a URL that resolves elsewhere is refused before any
// header is attached, so the key can never leave for another host. A 401 asks for a key (once
// for the requests waiting at that moment) and retries with it.

const KEY_ITEM = "ollama-proxy-console.api-key";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
  document.getElementById("key-button").hidden = !key;
}

/** The absolute URL of `path` on this origin; anything pointing elsewhere throws. */
export function ownUrl(path) {
  const url = new URL(path, location.href);
  if (url.origin !== location.origin) throw new Error(`refusing to call another origin: ${url.origin}`);
  return url;
}

let pendingPrompt = null;

/** Ask for a key in the dialog; concurrent 401s share one prompt. Resolves false on cancel. */
export function askForKey(message) {
  if (pendingPrompt) return pendingPrompt;
  const dialog = document.getElementById("key-dialog");
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  const note = dialog.querySelector("p");
  if (message) note.textContent = message;
  pendingPrompt = new Promise((resolve) => {
    const done = (ok) => {
      form.removeEventListener("submit", onSubmit);
      dialog.removeEventListener("close", onClose);
      if (dialog.open) dialog.close();
      pendingPrompt = null;
      resolve(ok);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      setKey(key);
      input.value = "";
      done(true);
    };
    const onClose = () => done(false);
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("close", onClose);
    dialog.showModal();
    input.focus();
  });
  return pendingPrompt;
}

/** fetch() on this origin with the key; a 401 prompts for a key and retries once per answer. */
export async function call(path, options = {}) {
  const url = ownUrl(path);
  const { prompt = true, ...init } = options;  // prompt: false hands a 401 back to the caller
  for (;;) {
    const headers = new Headers(init.headers || {});
    const key = getKey();
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const response = await fetch(url, { ...init, headers, credentials: "omit" });
    if (response.status !== 401 || !prompt) return response;
    const body = await readError(response);
    if (!(await askForKey(`${body.message} Enter an API key for this proxy.`))) {
      throw new ApiError(401, body.message, body);
    }
  }
}

/** JSON from `path`, or an ApiError carrying OpenAI's error message. */
export async function getJson(path, options = {}) {
  const response = await call(path, options);
  if (!response.ok) {
    const body = await readError(response);
    throw new ApiError(response.status, body.message, body);
  }
  return response.json();
}

/** The `error` object of OpenAI's envelope, or a stand-in built from the status line. */
export async function readError(response) {
  let text = "";
  try {
    text = await response.text();
    const data = JSON.parse(text);
    if (data && typeof data.error === "object" && data.error) {
      return { message: String(data.error.message || response.statusText), ...data.error };
    }
  } catch {
    // not JSON: fall through with the status line
  }
  return { message: `${response.status} ${response.statusText}`.trim(), raw: text };
}

export function initKeyButton() {
  const button = document.getElementById("key-button");
  button.hidden = !getKey();
  button.addEventListener("click", () => askForKey());
  document.getElementById("key-forget").addEventListener("click", () => {
    setKey("");
    document.getElementById("key-dialog").close();
  });
}
