// Click-to-call: a customer calls a queue from this page (served by the
// platform: agent_phone/cloud/web.py). It speaks docs/protocol.md as a
// customer trunk: a call token from POST /call/token, then place_call over
// the platform's WebSocket with the browser's offer at once and its ICE
// candidates after it (trickle ICE: ice_candidate, an empty one at the end).
"use strict";

const $ = (id) => document.getElementById(id);
const queue = document.body.dataset.queue;

const REASONS = {
  agent_hangup: "The agent ended the call.",
  customer_hangup: "You hung up.",
  customer_media_lost: "Your audio connection was lost.",
  shutdown: "The service closed the call.",
};

// The call as the page keeps it (also read by scripts embedding the page).
const call = (window.callPage = {
  state: "idle", // idle, starting, connecting, waiting, connected, ended
  reason: "",
  position: null,
  callId: null,
  agent: null,
  candidatesSent: 0,
  offerHadCandidates: null,
  pc: null,
});

let ws = null;
let stream = null;
let placed = false;
let candidatesEnded = false;
const held = []; // candidates found before place_call went

function setState(state, text) {
  call.state = state;
  $("state").textContent = text;
}

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function sendCandidate(message) {
  if (placed) send(message);
  else held.push(message);
}

function onCandidate(event) {
  // null, or (in some browsers) an empty candidate: the end of them, once.
  const text = event.candidate ? event.candidate.candidate : "";
  if (text === "") {
    if (candidatesEnded) return;
    candidatesEnded = true;
    sendCandidate({ type: "ice_candidate", candidate: "" });
    return;
  }
  call.candidatesSent += 1;
  sendCandidate({
    type: "ice_candidate",
    candidate: text,
    sdp_mid: event.candidate.sdpMid,
    sdp_mline_index: event.candidate.sdpMLineIndex,
  });
}

async function start() {
  $("call").disabled = true;
  $("hangup").disabled = false;
  Object.assign(call, { reason: "", position: null, callId: null, agent: null });
  placed = false;
  candidatesEnded = false;
  setState("starting", "Asking for your microphone…");
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    return finish("failed", `No microphone: ${error.message}`);
  }
  setState("connecting", "Connecting…");
  let grant;
  try {
    const response = await fetch("/call/token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ queue }),
    });
    if (!response.ok) return finish("failed", (await response.text()).trim());
    grant = await response.json();
  } catch (error) {
    return finish("failed", `We cannot be reached: ${error.message}`);
  }
  const pc = (call.pc = new RTCPeerConnection({ iceServers: [] }));
  stream.getTracks().forEach((track) => pc.addTrack(track, stream));
  pc.ontrack = (event) => {
    $("remote").srcObject = event.streams[0] || new MediaStream([event.track]);
  };
  pc.onicecandidate = onCandidate;
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "failed" && call.state !== "ended") {
      hangUp("Your audio connection failed.");
    }
  };
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(url);
  ws.onmessage = (event) => onMessage(JSON.parse(event.data));
  ws.onclose = () => {
    if (call.state !== "ended") finish("failed", "The connection to us closed.");
  };
  try {
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error("the WebSocket did not open"));
    });
  } catch (error) {
    return finish("failed", `We cannot be reached: ${error.message}`);
  }
  await pc.setLocalDescription(await pc.createOffer());
  const sdp = pc.localDescription.sdp;
  call.offerHadCandidates = sdp.includes("a=candidate:");
  send({ type: "place_call", version: 1, queue, caller: "Web caller", sdp, trunk_token: grant.token });
  placed = true;
  held.splice(0).forEach(send);
}

async function onMessage(message) {
  switch (message.type) {
    case "call_accepted":
      call.callId = message.call_id;
      await call.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
      setState("waiting", "Waiting for an agent…");
      break;
    case "queue_position":
      call.position = message.position;
      $("position").textContent =
        message.position === 1 ? "You are next." : `You are number ${message.position} in line.`;
      break;
    case "call_connected":
      call.agent = message.agent;
      $("position").textContent = "";
      setState("connected", `You are talking with ${message.agent}.`);
      $("keypad").hidden = false;
      break;
    case "call_ended":
      call.reason = message.reason;
      finish("ended", REASONS[message.reason] || `The call ended (${message.reason}).`);
      break;
    case "error":
      // A refused candidate (a name, a kind the service does not use) is
      // not the call's end: the others still connect it.
      if (message.in_reply_to === "ice_candidate") break;
      finish("failed", message.message);
      break;
  }
}

function hangUp(text) {
  if (call.callId) send({ type: "caller_hangup", call_id: call.callId });
  call.reason = call.reason || "customer_hangup";
  finish("ended", text || REASONS.customer_hangup);
}

function finish(how, text) {
  call.state = "ended";
  if (how === "failed") call.reason = call.reason || "failed";
  if (call.pc) call.pc.close();
  if (stream) stream.getTracks().forEach((track) => track.stop());
  if (ws) ws.close();
  ws = null;
  stream = null;
  $("position").textContent = "";
  $("keypad").hidden = true;
  $("state").textContent = text;
  $("call").disabled = false;
  $("hangup").disabled = true;
}

// Keys pressed go to the agent as RFC 4733 events (the platform accepts
// telephone-event/48000): what an agent asks for ("press 1", an account PIN).
call.pressKeys = (digits) => {
  const sender = call.pc && call.pc.getSenders().find((s) => s.track && s.track.kind === "audio");
  if (!sender || !sender.dtmf || !sender.dtmf.canInsertDTMF) return false;
  sender.dtmf.insertDTMF(digits, 100, 70);
  return true;
};

$("keypad").addEventListener("click", (event) => {
  if (event.target.tagName === "BUTTON") call.pressKeys(event.target.textContent);
});
$("call").addEventListener("click", start);
$("hangup").addEventListener("click", () => hangUp());
