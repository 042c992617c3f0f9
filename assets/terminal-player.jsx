// Replays an asciicast v2 recording (envhub/api/terminal/recording.py) in xterm,
// with its timing: play/pause, speed, seeking. Pauses longer than MAX_IDLE are
// shortened, as asciinema's player does.
import React, { useEffect, useRef, useState } from "react";
import { Terminal } from "@xterm/xterm";
import "@xterm/xterm/css/xterm.css";
import { Flex, IconButton, SegmentedControl, Slider, Text } from "@radix-ui/themes";
import { Pause, Play, RotateCcw } from "lucide-react";
import { FONT_FAMILY, xtermTheme } from "$/public/terminal-theme.js";
import { apiURL } from "$/public/terminal-link.js";

const MAX_IDLE = 2.0;

function parse(text) {
  const lines = text.split("\n").filter(Boolean);
  const header = JSON.parse(lines[0]);
  const events = [];
  let clock = 0;
  let last = 0;
  for (const line of lines.slice(1)) {
    const [time, code, data] = JSON.parse(line);
    clock += Math.min(time - last, MAX_IDLE);
    last = time;
    events.push({ t: clock, code, data });
  }
  return { header, events, duration: clock };
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

export function EnvhubPlayer({ src, colorMode = "light" }) {
  const hostRef = useRef(null);
  const termRef = useRef(null);
  const castRef = useRef(null);
  const cursorRef = useRef({ index: 0, position: 0, startedAt: 0 });
  const timerRef = useRef(null);
  const [playing, setPlaying] = useState(false);
  const [position, setPosition] = useState(0);
  const [duration, setDuration] = useState(0);
  const [speed, setSpeed] = useState("1");
  const [error, setError] = useState("");
  const [note, setNote] = useState("");

  useEffect(() => {
    const term = new Terminal({
      fontFamily: FONT_FAMILY, fontSize: 12, lineHeight: 1.2, theme: xtermTheme(colorMode),
      disableStdin: true, cursorBlink: false, scrollback: 2000,
    });
    term.open(hostRef.current);
    termRef.current = term;
    return () => {
      clearTimeout(timerRef.current);
      termRef.current = null;
      setTimeout(() => term.dispose(), 0);
    };
  }, []);

  useEffect(() => {
    if (termRef.current) termRef.current.options.theme = xtermTheme(colorMode);
  }, [colorMode]);

  useEffect(() => {
    if (!src) return;
    setError("");
    fetch(apiURL(src), { credentials: "include" })
      .then((r) => (r.ok ? r.text() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then((text) => {
        const cast = parse(text);
        castRef.current = cast;
        setDuration(cast.duration);
        seek(0);
        setPlaying(true);
      })
      .catch((e) => setError(`The recording could not be loaded (${e.message}).`));
  }, [src]);

  const apply = (event) => {
    const term = termRef.current;
    if (!term) return;
    if (event.code === "o") term.write(event.data);
    else if (event.code === "r") {
      const [cols, rows] = event.data.split("x").map(Number);
      if (cols && rows) term.resize(cols, rows);
    } else if (event.code === "m") setNote(event.data);
  };

  const seek = (to) => {
    const cast = castRef.current;
    const term = termRef.current;
    if (!cast || !term) return;
    term.reset();
    term.resize(cast.header.width || 80, cast.header.height || 24);
    setNote("");
    let index = 0;
    while (index < cast.events.length && cast.events[index].t <= to) apply(cast.events[index++]);
    cursorRef.current = { index, position: to };
    setPosition(to);
  };

  useEffect(() => {
    clearTimeout(timerRef.current);
    const cast = castRef.current;
    if (!playing || !cast) return undefined;
    const rate = Number(speed);
    const started = performance.now();
    const from = cursorRef.current.position;
    const step = () => {
      const now = from + ((performance.now() - started) / 1000) * rate;
      const cursor = cursorRef.current;
      while (cursor.index < cast.events.length && cast.events[cursor.index].t <= now) apply(cast.events[cursor.index++]);
      cursor.position = Math.min(now, cast.duration);
      setPosition(cursor.position);
      if (cursor.index >= cast.events.length) {
        setPlaying(false);
        return;
      }
      const next = (cast.events[cursor.index].t - now) / rate;
      timerRef.current = setTimeout(step, Math.max(16, Math.min(250, next * 1000)));
    };
    step();
    return () => clearTimeout(timerRef.current);
  }, [playing, speed]);

  const restart = () => { setPlaying(false); seek(0); setPlaying(true); };
  const toggle = () => {
    if (!playing && castRef.current && cursorRef.current.index >= castRef.current.events.length) seek(0);
    setPlaying(!playing);
  };

  return (
    <Flex direction="column" gap="3" className="term-player" id="terminal-player">
      <div className="term-screen is-player" style={{ background: xtermTheme(colorMode).background }}>
        <div className="term-host" ref={hostRef} />
      </div>
      {error ? <Text size="2" color="red">{error}</Text> : null}
      <Flex align="center" gap="3">
        <IconButton size="2" variant="soft" onClick={toggle} aria-label={playing ? "Pause" : "Play"} id="player-toggle">
          {playing ? <Pause size={16} /> : <Play size={16} />}
        </IconButton>
        <IconButton size="2" variant="ghost" color="gray" onClick={restart} aria-label="Restart"><RotateCcw size={15} /></IconButton>
        <Text size="1" color="gray" className="term-clock" id="player-clock">{clock(position)} / {clock(duration)}</Text>
        <Slider size="1" value={[position]} max={Math.max(duration, 0.01)} step={0.1} style={{ flex: 1 }}
          onValueChange={([v]) => { setPlaying(false); seek(v); }} aria-label="Position" />
        <SegmentedControl.Root size="1" value={speed} onValueChange={setSpeed}>
          <SegmentedControl.Item value="1">1×</SegmentedControl.Item>
          <SegmentedControl.Item value="2">2×</SegmentedControl.Item>
          <SegmentedControl.Item value="4">4×</SegmentedControl.Item>
        </SegmentedControl.Root>
      </Flex>
      {note ? <Text size="1" color="gray">{note}</Text> : null}
    </Flex>
  );
}
