// Nesting depth of a JSON text, counted before it is parsed: the API's bodies nest three levels at most, and a body
// nested thousands deep should cost a linear scan and a 400, not a parse, a validation walk or a recursive copy.

/** Deeper than any body the API takes, by far; documented in README (Management API). */
export const MAX_JSON_DEPTH = 32;

/** True when `text` opens more than `max` arrays and objects inside one another (brackets in strings do not count). */
export function jsonNestedDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > max) return true;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
    }
  }
  return false;
}
