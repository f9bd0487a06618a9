"use strict";
// What a typed line writes, for the static page of `zoo export-web` (no server to ask):
// text in, a layout of class indices and null (a gap) out. The rules are zoo/writing.py's,
// written again in JavaScript; the gap characters come from the model's info (Python's
// GAP_CHARACTERS), and tests/test_web.py runs both parsers on the same inputs and
// requires the same answers, errors included. Text is handled as code points, as
// Python does, so indices agree for characters outside the BMP.

(function () {
  const DIGITS_PER_CLASS_LIMIT = 10; // with at most this many classes each digit is a class

  function strip(chars, whitespace) {
    let start = 0;
    let end = chars.length;
    while (start < end && whitespace.has(chars[start])) start++;
    while (end > start && whitespace.has(chars[end - 1])) end--;
    return chars.slice(start, end);
  }

  function unknown(word, names) {
    return `unknown class '${word}'; classes are 0..${names.length - 1} (${names.join(", ")})`;
  }

  function empty(names) {
    const numbered = names.every((name, k) => name === String(k));
    const named = numbered || !names.length ? "" : ` or names such as '${names[0]}'`;
    return `empty condition: nothing to write; give class numbers such as '3' or '2 0 2 6'${named}`;
  }

  // [class index, end] of the class name written at `start`, or null; zoo.writing.name_at.
  function nameAt(chars, start, names, gaps) {
    const lowered = names.map((name) => name.toLowerCase());
    const longest = Math.max(0, ...names.map((name) => Array.from(name).length));
    for (let end = Math.min(chars.length, start + longest); end > start; end--) {
      if ((end < chars.length && !gaps.has(chars[end])) || gaps.has(chars[end - 1])) continue;
      const written = chars.slice(start, end).join("");
      const stretch = written.toLowerCase();
      const candidates = lowered.flatMap((name, k) => (name.startsWith(stretch) ? [k] : []));
      const exact = candidates.filter((k) => lowered[k] === stretch);
      if (exact.length || candidates.length === 1) return [(exact.length ? exact : candidates)[0], end];
      if (candidates.length) {
        throw new Error(`ambiguous class '${written}': it could be ${candidates.map((k) => names[k]).join(", ")}; `
          + "type more of the name");
      }
    }
    return null;
  }

  function numberClasses(number, names) {
    const parts = names.length <= DIGITS_PER_CLASS_LIMIT ? Array.from(number) : [number];
    for (const part of parts) if (Number(part) >= names.length) throw new Error(unknown(part, names));
    return parts.map(Number);
  }

  // The line `text` writes, given {class_names, gap_characters} (the model's info); throws an
  // Error with the reason for text that cannot be written.
  function layout(text, info) {
    const names = info.class_names.map(String);
    const gaps = new Set(Array.from(info.gap_characters));
    const whitespace = new Set(Array.from(info.whitespace));
    const chars = strip(Array.from(text), whitespace);
    const tokens = [];
    let i = 0;
    while (i < chars.length) {
      if (gaps.has(chars[i])) {
        tokens.push(null);
        i++;
        continue;
      }
      let end = i;
      while (end < chars.length && !gaps.has(chars[end])) end++;
      const word = chars.slice(i, end).join("");
      const named = nameAt(chars, i, names, gaps);
      if (named !== null) {
        tokens.push(named[0]);
        i = named[1];
      } else if (/^[0-9]+$/.test(word)) {
        tokens.push(...numberClasses(word, names));
        i = end;
      } else {
        throw new Error(unknown(word, names));
      }
    }
    if (!tokens.some((token) => token !== null)) throw new Error(empty(names));
    return tokens;
  }

  window.ZooWriting = { layout };
})();
