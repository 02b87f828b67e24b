// Server-Sent Events over fetch(): the proxy's chat stream, read frame by frame.
//
// EventSource cannot POST or send an Authorization header, so the body of a fetch() response
// is decoded here following the WHATWG event-stream rules the proxy relies on: events end at a
// blank line, "data:" lines of one event are joined with "\n", comments (":") are skipped, and
// "\r\n" or "\r" end lines too.

/** A parser fed text chunks in any split; returns the data of each completed event. */
export class SseParser {
  constructor() {
    this.buffer = "";
    this.data = [];
  }

  push(text) {
    this.buffer += text;
    const events = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) break;
      // A lone "\r" at the very end may be the first half of "\r\n": wait for more.
      if (match[0] === "\r" && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      if (line === "") {
        if (this.data.length) events.push(this.data.join("\n"));
        this.data = [];
      } else if (line.startsWith("data:")) {
        this.data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
      }
      // other fields (event:, id:, retry:) and comments are not used by the proxy
    }
    return events;
  }
}

/** Yields the parsed JSON of each `data:` event of `response` until `[DONE]` or the end. */
export async function* sseJson(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      for (const data of parser.push(value)) {
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  } finally {
    // Ends the response when the caller stops early; a no-op after the end or an abort.
    reader.cancel().catch(() => {});
  }
}
