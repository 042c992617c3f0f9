// envhub's in-browser terminal: xterm.js + the fit addon on a TerminalLink.
// Rendered by envhub/ui/components/terminal.py (a Reflex NoSSRComponent).
import React, { useCallback, useEffect, useRef, useState } from "react";
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { WebLinksAddon } from "@xterm/addon-web-links";
import "@xterm/xterm/css/xterm.css";
import { Badge, Button, DropdownMenu, Flex, IconButton, Select, Text, Tooltip } from "@radix-ui/themes";
import { ClipboardPaste, Copy, Eye, Hand, Maximize2, Minimize2, Plus, Power, Share2, SquareTerminal, Users } from "lucide-react";
import { FONT_FAMILY, xtermTheme } from "$/public/terminal-theme.js";
import { apiURL, randomId, TerminalLink } from "$/public/terminal-link.js";

const STATUS = {
  connecting: { color: "amber", text: "Connecting…" },
  connected: { color: "green", text: "Connected" },
  reconnecting: { color: "amber", text: "Reconnecting…" },
  ended: { color: "gray", text: "Ended" },
  refused: { color: "red", text: "Unavailable" },
  access_ended: { color: "red", text: "Access ended" },
};

function storageKey(environmentId) {
  return `envhub.terminal.${environmentId}`;
}

function initialSession(environmentId, containers) {
  const joined = new URLSearchParams(window.location.search).get("terminal");
  if (joined) return { id: joined, watch: true, container: "" };
  try {
    const saved = JSON.parse(window.sessionStorage.getItem(storageKey(environmentId)) || "null");
    if (saved?.id) return { id: saved.id, watch: false, container: saved.container || "" };
  } catch (_) {}
  return { id: randomId(), watch: false, container: containers?.[0] || "" };
}

function age(seconds) {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  return `${Math.floor(seconds / 3600)} h`;
}

// Running sessions of the environment that one may watch (polled while the page is open).
function useRunningSessions(environmentId) {
  const [sessions, setSessions] = useState([]);
  useEffect(() => {
    let stopped = false;
    const poll = () =>
      fetch(apiURL(`/api/v1/environments/${environmentId}/terminals`), { credentials: "include" })
        .then((r) => (r.ok ? r.json() : { sessions: [] }))
        .then((body) => !stopped && setSessions(body.sessions || []))
        .catch(() => {});
    poll();
    const timer = setInterval(poll, 5000);
    return () => { stopped = true; clearInterval(timer); };
  }, [environmentId]);
  return sessions;
}

function initials(name) {
  return (name || "?").slice(0, 2).toUpperCase();
}

function Presence({ participants, you }) {
  if (!participants?.length) return null;
  return (
    <Flex gap="1" align="center" className="term-presence" data-count={participants.length}>
      {participants.map((p) => (
        <Tooltip key={p.id} content={`${p.name}${p.id === you ? " (you)" : ""} · ${p.role === "driver" ? "typing" : "watching"}`}>
          <span className={`term-avatar ${p.role === "driver" ? "is-driver" : ""}`} data-name={p.name} data-role={p.role}>
            {initials(p.name)}
          </span>
        </Tooltip>
      ))}
    </Flex>
  );
}

export function EnvhubTerminal({ environmentId, containers = [], colorMode = "light", canShell = true, height = "440px" }) {
  const hostRef = useRef(null);
  const termRef = useRef(null);
  const fitRef = useRef(null);
  const linkRef = useRef(null);
  const [session, setSession] = useState(null);
  const [state, setState] = useState({ status: "connecting", participants: [] });
  const [full, setFull] = useState(false);
  const [title, setTitle] = useState("");
  const [copied, setCopied] = useState("");
  const running_ = useRunningSessions(environmentId);

  const patch = useCallback((partial) => {
    if (partial.resize) {
      const term = termRef.current;
      const link = linkRef.current;
      if (term && link?.role === "driver") {
        try { fitRef.current?.fit(); } catch (_) {}
        link.resize(term.cols, term.rows);
      }
      return;
    }
    setState((s) => ({ ...s, ...partial }));
  }, []);

  useEffect(() => setSession(initialSession(environmentId, containers)), [environmentId]);

  // One xterm per mounted component.
  useEffect(() => {
    const term = new Terminal({
      fontFamily: FONT_FAMILY,
      fontSize: 13,
      lineHeight: 1.2,
      cursorBlink: true,
      scrollback: 5000,
      allowProposedApi: true,
      macOptionIsMeta: true,
      theme: xtermTheme(colorMode),
    });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.loadAddon(new WebLinksAddon());
    term.open(hostRef.current);
    try { fit.fit(); } catch (_) {}
    term.onData((data) => linkRef.current?.input(data));
    term.onBinary((data) => linkRef.current?.input(Uint8Array.from(data, (c) => c.charCodeAt(0))));
    term.onTitleChange((t) => setTitle(t));
    term.attachCustomKeyEventHandler((event) => {
      if (event.type !== "keydown" || !event.ctrlKey || !event.shiftKey) return true;
      if (event.code === "KeyC") {
        navigator.clipboard?.writeText(term.getSelection());
        return false;
      }
      if (event.code === "KeyV") {
        navigator.clipboard?.readText().then((text) => text && term.paste(text));
        return false;
      }
      return true;
    });
    termRef.current = term;
    fitRef.current = fit;
    let pending = null;
    const observer = new ResizeObserver(() => {
      clearTimeout(pending);
      pending = setTimeout(() => patch({ resize: true }), 60);
    });
    observer.observe(hostRef.current);
    return () => {
      observer.disconnect();
      clearTimeout(pending);
      termRef.current = null;
      // React StrictMode mounts twice in development; xterm throws if disposed mid-render.
      setTimeout(() => term.dispose(), 0);
    };
  }, []);

  useEffect(() => {
    if (termRef.current) termRef.current.options.theme = xtermTheme(colorMode);
  }, [colorMode]);

  // One link per session: a new session (or container) replaces it.
  useEffect(() => {
    const term = termRef.current;
    if (!session || !term || (!canShell && !session.watch)) return undefined;
    term.reset();
    setState({ status: "connecting", participants: [] });
    if (!session.watch) {
      window.sessionStorage.setItem(storageKey(environmentId), JSON.stringify({ id: session.id, container: session.container }));
    }
    const link = new TerminalLink({
      environmentId, session: session.id, watch: session.watch, container: session.container, term,
      onState: (partial) => {
        if (partial.status === "ended" && !session.watch) window.sessionStorage.removeItem(storageKey(environmentId));
        patch(partial);
      },
    });
    linkRef.current = link;
    link.connect();
    term.focus();
    return () => {
      link.dispose();
      if (linkRef.current === link) linkRef.current = null;
    };
  }, [session, canShell]);

  useEffect(() => {
    const t = setTimeout(() => patch({ resize: true }), 80);
    return () => clearTimeout(t);
  }, [full]);

  const newSession = (container) => {
    window.sessionStorage.removeItem(storageKey(environmentId));
    const url = new URL(window.location.href);
    if (url.searchParams.has("terminal")) {
      url.searchParams.delete("terminal");
      window.history.replaceState(null, "", url.toString());
    }
    setSession({ id: randomId(), watch: false, container: container ?? session?.container ?? "" });
  };
  const flash = (text) => { setCopied(text); setTimeout(() => setCopied(""), 1600); };
  const copySelection = () => {
    const text = termRef.current?.getSelection();
    if (text) navigator.clipboard?.writeText(text).then(() => flash("Copied"));
    termRef.current?.focus();
  };
  const paste = () => {
    navigator.clipboard?.readText().then((text) => text && termRef.current?.paste(text)).catch(() => {});
    termRef.current?.focus();
  };
  const share = () => {
    const url = new URL(window.location.href);
    url.searchParams.set("terminal", state.session || session?.id || "");
    navigator.clipboard?.writeText(url.toString()).then(() => flash("Link copied"), () => flash(url.toString()));
  };

  const status = STATUS[state.status] || STATUS.connecting;
  let statusText = status.text;
  if (state.status === "reconnecting" && state.retryIn) statusText = `Reconnecting in ${state.retryIn}s…`;
  if (state.status === "ended") statusText = `Ended${state.exitCode === null || state.exitCode === undefined ? "" : ` · exit ${state.exitCode}`}`;
  if (state.status === "ended" && state.restarting) statusText = "Ended · envhub restarted";
  if (state.status === "refused") statusText = state.error || state.reason || status.text;
  if (state.status === "access_ended") statusText = `Access ended${state.error ? ` · ${state.error}` : ""}`;
  const driver = state.role === "driver";
  const others = (state.participants || []).filter((p) => p.id !== state.you && p.may_drive);
  const current = state.session || session?.id;
  const elsewhere = running_.filter((r) => r.id !== current);
  const running = state.status === "connected" || state.status === "reconnecting" || state.status === "connecting";

  return (
    <div className={`term-frame ${full ? "is-full" : ""}`} data-status={state.status} data-role={state.role || ""} id="terminal">
      <Flex className="term-bar" align="center" gap="2" wrap="wrap">
        <Flex align="center" gap="2" className="term-status" id="terminal-status" data-status={state.status}>
          <span className={`term-dot is-${status.color} ${state.status === "connecting" || state.status === "reconnecting" ? "pulse" : ""}`} />
          <Text size="1" weight="medium">{statusText}</Text>
          {title || state.where ? <Text size="1" color="gray" className="term-title" truncate>{title || state.where}</Text> : null}
        </Flex>
        {state.status === "connected" && !driver ? (
          <Badge color="gray" variant="soft" radius="full" id="terminal-watching"><Eye size={12} /> Watching</Badge>
        ) : null}
        {copied ? <Badge color="green" variant="soft" radius="full">{copied}</Badge> : null}
        <Flex flexGrow="1" />
        <Presence participants={state.participants} you={state.you} />
        {elsewhere.length ? (
          <DropdownMenu.Root>
            <DropdownMenu.Trigger>
              <Button size="1" variant="soft" color="gray" id="terminal-sessions">
                <Users size={13} /> {elsewhere.length} other
              </Button>
            </DropdownMenu.Trigger>
            <DropdownMenu.Content size="1">
              <DropdownMenu.Label>Running sessions · watch</DropdownMenu.Label>
              {elsewhere.map((r) => (
                <DropdownMenu.Item key={r.id} className="term-session-item" data-session={r.id} onSelect={() => setSession({ id: r.id, watch: true, container: "" })}>
                  {r.owner}{r.container ? ` · ${r.container}` : ""} · {age(r.age_seconds)} · {r.participants.length} connected
                </DropdownMenu.Item>
              ))}
            </DropdownMenu.Content>
          </DropdownMenu.Root>
        ) : null}
        {containers.length > 1 ? (
          <Select.Root size="1" value={session?.container || containers[0]} onValueChange={(c) => newSession(c)}>
            <Select.Trigger variant="surface" id="terminal-container" aria-label="Container" />
            <Select.Content>
              {containers.map((c) => <Select.Item key={c} value={c}>{c}</Select.Item>)}
            </Select.Content>
          </Select.Root>
        ) : null}
        {driver && others.length ? (
          <DropdownMenu.Root>
            <DropdownMenu.Trigger>
              <Button size="1" variant="soft" color="gray" id="terminal-handover"><Hand size={13} /> Hand over</Button>
            </DropdownMenu.Trigger>
            <DropdownMenu.Content size="1">
              {others.map((p) => (
                <DropdownMenu.Item key={p.id} onSelect={() => linkRef.current?.send({ type: "handover", to: p.id })}>{p.name}</DropdownMenu.Item>
              ))}
            </DropdownMenu.Content>
          </DropdownMenu.Root>
        ) : null}
        {!driver && state.mayDrive && state.status === "connected" && !state.driverPresent ? (
          <Button size="1" variant="soft" id="terminal-take" onClick={() => linkRef.current?.send({ type: "take" })}><Hand size={13} /> Take control</Button>
        ) : null}
        <Tooltip content="Copy selection (Ctrl+Shift+C)">
          <IconButton size="1" variant="ghost" color="gray" onClick={copySelection} aria-label="Copy"><Copy size={14} /></IconButton>
        </Tooltip>
        <Tooltip content="Paste (Ctrl+Shift+V)">
          <IconButton size="1" variant="ghost" color="gray" onClick={paste} disabled={!driver} aria-label="Paste"><ClipboardPaste size={14} /></IconButton>
        </Tooltip>
        <Tooltip content="Copy a link teammates can watch from">
          <IconButton size="1" variant="ghost" color="gray" onClick={share} disabled={!running} aria-label="Share" id="terminal-share"><Share2 size={14} /></IconButton>
        </Tooltip>
        <Tooltip content={full ? "Back to the page" : "Full window"}>
          <IconButton size="1" variant="ghost" color="gray" onClick={() => setFull(!full)} aria-label="Full window" id="terminal-full">
            {full ? <Minimize2 size={14} /> : <Maximize2 size={14} />}
          </IconButton>
        </Tooltip>
        {running && driver ? (
          <Tooltip content="End this shell">
            <IconButton size="1" variant="ghost" color="red" onClick={() => linkRef.current?.send({ type: "close" })} aria-label="End session" id="terminal-end"><Power size={14} /></IconButton>
          </Tooltip>
        ) : null}
        {!running && canShell ? (
          <Button size="1" variant="soft" onClick={() => newSession()} id="terminal-new"><Plus size={13} /> New session</Button>
        ) : null}
      </Flex>
      <div className="term-screen" style={{ height: full ? undefined : height, background: xtermTheme(colorMode).background }}>
        <div className="term-host" ref={hostRef} id="terminal-screen" />
        {!canShell && !session?.watch ? (
          <div className="term-overlay">
            <SquareTerminal size={20} />
            <Text size="2">Your role can watch shared sessions but not open a shell here.</Text>
          </div>
        ) : null}
      </div>
    </div>
  );
}
