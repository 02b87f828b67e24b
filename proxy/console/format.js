// Pure formatting helpers shared by the views (numbers, sizes, times, CSV).

const SI = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];

/** 1234567 -> "1.23M"; below 1000 the integer itself. */
export function compact(n) {
  for (const [size, suffix] of SI) {
    if (Math.abs(n) >= size) return `${trim(n / size)}${suffix}`;
  }
  return Number.isInteger(n) ? String(n) : trim(n);
}

function trim(x) {
  return String(Number(x.toPrecision(3)));
}

/** Thousands separators for tables: 1234567 -> "1,234,567". */
export function grouped(n) {
  return Number(n).toLocaleString("en-US");
}

/** Bytes in binary units: 4661224676 -> "4.3 GiB". */
export function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let x = Number(n) || 0;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i += 1;
  }
  return `${i ? x.toFixed(1) : x} ${units[i]}`;
}

/** Seconds until (or since) a time, in words: "in 4 min", "expired". */
export function until(iso, now = Date.now()) {
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return "unknown";
  const s = Math.round((at - now) / 1000);
  if (s <= 0) return "expired";
  if (s < 90) return `in ${s} s`;
  if (s < 90 * 60) return `in ${Math.round(s / 60)} min`;
  if (s < 36 * 3600) return `in ${Math.round(s / 3600)} h`;
  return `in ${Math.round(s / 86400)} d`;
}

/** A bucket's start (Unix seconds, UTC) as a label: "2026-11-30" or "11-30 14:00". */
export function bucketLabel(seconds, width) {
  const iso = new Date(seconds * 1000).toISOString();
  return width === "1h" ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(0, 10);
}

/** "YYYY-MM-DD" (a date input's value, taken as UTC) -> Unix seconds at 00:00 UTC. */
export function dayStart(value) {
  return Math.floor(Date.parse(`${value}T00:00:00Z`) / 1000);
}

/** The date input value for a Date, in UTC. */
export function dayValue(date) {
  return date.toISOString().slice(0, 10);
}

/** RFC 4180 CSV: fields with a comma, quote or line break are quoted, quotes doubled. */
export function toCsv(rows) {
  return rows
    .map((row) => row.map((cell) => {
      const text = cell === null || cell === undefined ? "" : String(cell);
      return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
    }).join(","))
    .join("\r\n") + "\r\n";
}

/** Milliseconds as "850 ms" or "1.42 s". */
export function millis(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}
