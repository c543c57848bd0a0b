"""One customer call with real audio both ways: placed into a queue, or
(``CallPlan.answer_number``) taken when an agent dials the customer's number.

Used by ``agent-phone-caller``, the demo, the tests and the benchmarks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiortc import RTCSessionDescription

from agent_phone.media.audio import AudioSink, AudioSource
from agent_phone.media.dtls import FingerprintError, check_fingerprints
from agent_phone.media.ice import CandidateError, RemoteCandidates, split_candidates
from agent_phone.media.peer import new_peer_connection, opus_only
from agent_phone.media.playout import Playout, PlayoutSink, WallClockSink
from agent_phone.media.quality import CallQuality, StatsSample, sample
from agent_phone.media.receiver import AudioReceiver, PacketSink, tap_audio
from agent_phone.media.telephone_event import EventReceiver, negotiated_payload_type
from agent_phone.media.tones import HeardAnalysis
from agent_phone.media.tracks import LossFollower, OutboundAudioTrack
from agent_phone.protocol import (
    PROTOCOL_VERSION,
    AcceptIncoming,
    AwaitCalls,
    AwaitingCalls,
    CallAccepted,
    CallConnected,
    CallEnded,
    CallerHangup,
    Error,
    IceCandidate,
    IncomingCall,
    Message,
    PlaceCall,
    QueuePosition,
    decode_to_caller,
)
from agent_phone.signaling import SignalingClient, SignalingError
from agent_phone.tasks import TaskSet

logger = logging.getLogger(__name__)


@dataclass
class CallResult:
    """What the customer experienced; printed as the caller's JSON summary."""

    answered: bool = False
    agent: str | None = None
    call_id: str | None = None
    wait_s: float = 0.0
    talk_s: float = 0.0
    #: ``agent``, ``customer``, ``platform`` or ``error``.
    ended_by: str = "customer"
    reason: str | None = None
    error: str | None = None
    positions: list[int] = field(default_factory=list)
    #: Times the call went back to the queue after an agent had taken it
    #: (their phone died, their network was cut): the customer heard the
    #: waiting tone again until the next agent.
    requeued: int = 0
    #: What the customer heard (with ``CallPlan.listen``; agent_phone.media.tones):
    #: DTMF digits in order, seconds of the waiting tone and of the hold
    #: music, and the dominant frequency (Hz, 0 = silence) of each second
    #: heard, the first starting at ``heard_from`` (Unix time at which the
    #: customer's playout began, when the first packet arrived; from there
    #: the recording runs on the caller's own clock, as a speaker would).
    dtmf_heard: str = ""
    #: Keys that came as RFC 4733 events (with ``CallPlan.rfc4733``), in order.
    dtmf_events: str = ""
    waiting_tone_s: float = 0.0
    hold_tone_s: float = 0.0
    heard_timeline: list[int] = field(default_factory=list)
    heard_from: float | None = None
    #: Unix time at which the first 20 ms of the customer's audio was sent,
    #: and at which the recording's first sample was played.
    play_started_at: float | None = None
    record_started_at: float | None = None
    #: What the customer's ear got (agent_phone/media/quality.py), at the end.
    quality: dict[str, object] | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


#: A call told to last until the agent hangs up still ends after this.
MAX_TALK_S = 4 * 3600.0


@dataclass(frozen=True)
class CallPlan:
    platform: str
    queue: str
    caller: str = "customer"
    #: Talk this long after the answer, then hang up (None: until the agent
    #: does, or MAX_TALK_S has passed).
    duration_s: float | None = 5.0
    #: Give up after waiting this long for an agent.
    wait_s: float = 60.0
    #: The platform's trunk token (its ``ready`` event, or its configuration).
    trunk_token: str = field(default="", repr=False)
    #: Verify a wss:// platform against this CA file instead of the system's.
    ca_file: Path | None = None
    #: Analyse what is heard (DTMF, tones; ~1-2 % of a core per call).
    listen: bool = False
    #: Take a call to this number instead of placing one (``--answer``):
    #: wait up to ``wait_s`` for an agent to dial it, then answer.
    answer_number: str | None = None
    #: With ``answer_number``: let a call ring this long before answering,
    #: or decline it.
    ring_s: float = 0.0
    decline: bool = False
    #: Trickle ICE (RFC 8838): the offer goes without its candidates, which
    #: follow it as ``ice_candidate`` messages, then their end.
    trickle: bool = False
    #: Offer RFC 4733 telephone-events, as a browser does: the agent's keys
    #: then come as events (``dtmf_events``), not as tones.
    rfc4733: bool = False


async def place_call(
    plan: CallPlan,
    source: AudioSource,
    sink: AudioSink | None = None,
    hangup: asyncio.Event | None = None,
    observe: PacketSink | None = None,
    connected: asyncio.Event | None = None,
) -> CallResult:
    """Place the call and return when it is over; never raises for call failures.

    ``hangup``, when set by the owner, ends the call from the customer's side;
    ``connected`` is set when the customer's side learns that an agent is on
    the line (a hangup before that is an abandoned call); ``observe`` is shown
    every packet that arrives (benchmarks count them).
    """
    result = CallResult()
    signaling = SignalingClient(plan.platform, decode_to_caller, ca_file=plan.ca_file)
    pc = new_peer_connection()
    #: Candidates the platform trickles (none today: docs/protocol.md).
    remote = RemoteCandidates(pc)
    track = OutboundAudioTrack(source)
    tasks = TaskSet("caller")
    heard = HeardAnalysis() if plan.listen else None
    # The customer's ear: the jitter buffer, played on the recording's clock
    # (or, with nothing to record, the wall clock), from the first packet on.
    receiver = AudioReceiver()
    receiver.start()

    def pull(play_at: float, now: float) -> np.ndarray:
        samples = receiver.pull(play_at, now)
        if heard is not None:
            heard.write(samples)
        return samples

    ear: PlayoutSink | None = sink if sink is not None else WallClockSink() if heard else None
    playout = Playout(pull, ear) if ear is not None else None

    def arrived(payload: bytes, timestamp: int, sequence: int) -> None:
        if observe is not None:
            observe(payload, timestamp, sequence)
        if playout is None or ending:
            return  # nobody listens (or no longer): nothing to buffer or decode
        receiver.put(payload, timestamp, sequence)
        if not playout.running:
            result.heard_from = time.time()
            playout.start()
            result.record_started_at = getattr(ear, "clock_started_at", None) or result.heard_from

    def key_event(digit: str) -> None:
        result.dtmf_events += digit

    started = time.monotonic()
    baseline = StatsSample()
    ending = False
    answered_at = 0.0
    messages: AsyncGenerator[Message, None] | None = None
    next_message: asyncio.Future[Message | None] | None = None
    try:
        await source.start()
        if sink is not None:
            await sink.start()
        await signaling.connect()
        sender = pc.addTrack(track)
        if not plan.rfc4733:
            opus_only(pc)  # (it hears the agent's keys in band)
        tap = tap_audio(pc, arrived)
        tasks.spawn(LossFollower(sender, track).run(), "loss")
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        candidates: list[tuple[str, str | None, int]] = []
        if plan.trickle:
            offer, candidates = split_candidates(offer)

        async def trickle(call_id: str | None) -> None:
            for candidate, mid, index in candidates:
                await signaling.send(
                    IceCandidate(
                        call_id=call_id, candidate=candidate, sdp_mid=mid, sdp_mline_index=index
                    )
                )
            if plan.trickle:
                await signaling.send(IceCandidate(call_id=call_id, candidate=""))

        if plan.answer_number is not None:
            await signaling.send(
                AwaitCalls(
                    version=PROTOCOL_VERSION,
                    number=plan.answer_number,
                    trunk_token=plan.trunk_token,
                )
            )
        else:
            await signaling.send(
                PlaceCall(
                    version=PROTOCOL_VERSION,
                    queue=plan.queue,
                    caller=plan.caller,
                    sdp=offer,
                    trunk_token=plan.trunk_token,
                )
            )
            await trickle(None)
        user_hangup = hangup or asyncio.Event()
        messages = signaling.messages()
        deadline = started + plan.wait_s
        #: With --ring: when to answer the call that rings here (0: not yet).
        accept_at = 0.0
        while True:
            if answered_at:
                talk_s = MAX_TALK_S if plan.duration_s is None else plan.duration_s
                deadline = answered_at + talk_s
            wake = min(deadline, accept_at) if accept_at else deadline
            timeout = max(0.0, wake - time.monotonic())
            if next_message is None:
                next_message = asyncio.ensure_future(anext(messages, None))
            stop = asyncio.ensure_future(user_hangup.wait())
            waiting: set[asyncio.Future[Any]] = {next_message, stop}
            done, _ = await asyncio.wait(
                waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            stop.cancel()
            if (
                next_message not in done
                and accept_at
                and time.monotonic() >= accept_at
                and not user_hangup.is_set()
                and result.call_id is not None
            ):
                # It has rung long enough: answer, and go on reading.
                accept_at = 0.0
                await signaling.send(AcceptIncoming(call_id=result.call_id, sdp=offer))
                await trickle(result.call_id)
                continue
            if next_message not in done:
                next_message.cancel()
                await asyncio.gather(next_message, return_exceptions=True)
                # Waited or talked long enough, or told to hang up.
                if result.call_id is not None:
                    await signaling.send(CallerHangup(call_id=result.call_id))
                result.ended_by = "customer"
                if answered_at:
                    result.reason = "customer_hangup"
                elif plan.answer_number is not None:
                    result.reason = "declined" if result.call_id else "no_call"
                else:
                    result.reason = "abandoned"
                break
            message = next_message.result()
            next_message = None
            match message:
                case None:
                    result.ended_by = "error"
                    result.error = "the platform closed the connection"
                    break
                case CallAccepted():
                    result.call_id = message.call_id
                    try:
                        check_fingerprints(message.sdp)
                    except FingerprintError as exc:
                        await signaling.send(CallerHangup(call_id=message.call_id))
                        result.ended_by = "error"
                        result.error = f"the platform's media answer is refused: {exc}"
                        break
                    await pc.setRemoteDescription(RTCSessionDescription(message.sdp, "answer"))
                    await remote.flush()
                    if (event_type := negotiated_payload_type(message.sdp)) is not None:
                        tap.event_type = event_type
                        tap.events = EventReceiver(key_event, time.monotonic).put
                case IceCandidate():
                    try:
                        await remote.add(
                            message.candidate, message.sdp_mid, message.sdp_mline_index
                        )
                    except CandidateError as exc:
                        logger.warning("the platform's candidate is refused: %s", exc)
                case AwaitingCalls():
                    logger.info("awaiting calls to %s", message.number)
                case IncomingCall() if result.call_id is None:
                    # An agent calls: answer with this leg's offer (after
                    # letting it ring, with --ring), or refuse it (--decline).
                    result.call_id = message.call_id
                    result.agent = message.agent
                    if plan.decline:
                        await signaling.send(CallerHangup(call_id=message.call_id))
                        result.ended_by = "customer"
                        result.reason = "declined"
                        break
                    if plan.ring_s > 0:
                        accept_at = time.monotonic() + plan.ring_s
                    else:
                        await signaling.send(AcceptIncoming(call_id=message.call_id, sdp=offer))
                        await trickle(message.call_id)
                case QueuePosition(position=position):
                    result.positions.append(position)
                    if answered_at:
                        result.requeued += 1
                case CallConnected(agent=agent):
                    answered_at = time.monotonic()
                    result.answered = True
                    result.agent = agent
                    result.wait_s = round(answered_at - started, 3)
                    if connected is not None:
                        connected.set()
                case CallEnded(reason=reason):
                    result.reason = reason
                    result.ended_by = "agent" if reason == "agent_hangup" else "platform"
                    break
                case Error():
                    result.ended_by = "error"
                    result.error = f"{message.code}: {message.message}"
                    break
    except SignalingError as exc:
        result.ended_by = "error"
        result.error = str(exc)
    finally:
        if answered_at:
            result.talk_s = round(time.monotonic() - answered_at, 3)
        elif not result.wait_s:
            result.wait_s = round(time.monotonic() - started, 3)
        result.play_started_at = track.source_started_at
        # No packet that still comes in starts the playout again.
        ending = True
        if playout is not None:
            await playout.stop()
        try:
            result.quality = CallQuality.since(baseline, await sample(pc, receiver)).as_dict()
        except Exception as exc:  # a report must never stand in the way of ending a call
            logger.warning("no quality figures: %s", exc)
        if heard is not None:
            result.dtmf_heard = heard.digits
            result.waiting_tone_s = round(heard.waiting_s, 1)
            result.hold_tone_s = round(heard.hold_s, 1)
            result.heard_timeline = list(heard.timeline)
        if next_message is not None and not next_message.done():
            # Cancelled while it waited for a message: the generator is still
            # running in that task, and cannot be closed until it stops.
            next_message.cancel()
            await asyncio.gather(next_message, return_exceptions=True)
        if messages is not None:
            await messages.aclose()
        await tasks.close()
        await signaling.close()
        await pc.close()
        track.stop()
        receiver.close()
        await source.stop()
        if sink is not None:
            await sink.stop()
    logger.info("call %s: %s", result.call_id, result)
    return result
