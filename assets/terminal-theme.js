// Terminal colours that stay readable in the dashboard's light and dark modes
// (Radix slate backgrounds; ANSI colours tuned for contrast on each).
export const FONT_FAMILY =
  '"JetBrains Mono", "SFMono-Regular", Menlo, Consolas, "Liberation Mono", "DejaVu Sans Mono", monospace';

const DARK = {
  background: "#111316",
  foreground: "#e4e7ec",
  cursor: "#a5b4fc",
  cursorAccent: "#111316",
  selectionBackground: "rgba(129, 140, 248, 0.35)",
  black: "#1f2329",
  red: "#f87171",
  green: "#4ade80",
  yellow: "#facc15",
  blue: "#60a5fa",
  magenta: "#c084fc",
  cyan: "#22d3ee",
  white: "#d4d8df",
  brightBlack: "#6b7280",
  brightRed: "#fca5a5",
  brightGreen: "#86efac",
  brightYellow: "#fde68a",
  brightBlue: "#93c5fd",
  brightMagenta: "#d8b4fe",
  brightCyan: "#67e8f9",
  brightWhite: "#f8fafc",
};

const LIGHT = {
  background: "#fbfcfd",
  foreground: "#1c2024",
  cursor: "#4f46e5",
  cursorAccent: "#fbfcfd",
  selectionBackground: "rgba(79, 70, 229, 0.22)",
  black: "#1c2024",
  red: "#c2272d",
  green: "#18794e",
  yellow: "#946800",
  blue: "#0b63c5",
  magenta: "#8e4ec6",
  cyan: "#0c7792",
  white: "#8b8d98",
  brightBlack: "#60646c",
  brightRed: "#dc3e42",
  brightGreen: "#2a7e3b",
  brightYellow: "#ab6400",
  brightBlue: "#0d74ce",
  brightMagenta: "#953ea3",
  brightCyan: "#107d98",
  brightWhite: "#b9bbc6",
};

export function xtermTheme(mode) {
  return mode === "dark" ? DARK : LIGHT;
}
