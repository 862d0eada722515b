// A small WebAudio synthesizer for chargen's piano rolls: no samples, no network.
//
// Pitched notes are oscillators whose waveform follows the General MIDI program
// family (keys, organ, bass, strings, brass...), shaped by an attack-decay-release
// envelope. Drums (MIDI channel 10) are synthesized hits: a falling sine for kicks
// and toms, filtered noise for snares, hi-hats and cymbals. Notes are scheduled a
// little ahead of time on the audio clock (a "lookahead" scheduler), so long
// pieces never create thousands of nodes at once.
//
//   const player = ChargenSynth.play(notes, {onEnd: () => ...});  // notes: [start, end, pitch, velocity, program, isDrum]
//   player.stop();
//   ChargenSynth.render(notes).then((buffer) => ...);  // the whole piece, offline, as fast as it computes
"use strict";

const ChargenSynth = (() => {
  const LOOKAHEAD_S = 0.6;      // schedule notes starting this far ahead
  const TICK_MS = 150;          // how often the scheduler wakes up
  const MASTER_GAIN = 0.22;
  const RENDER_RATE = 22050;     // sample rate of offline renders
  let context = null;
  const noises = new WeakMap();  // per audio context: one second of white noise, shared by every drum hit

  function audio() {
    if (!context) {
      const Context = window.AudioContext || window.webkitAudioContext;
      context = new Context();
    }
    return context;
  }

  function noiseOf(ctx) {
    if (!noises.has(ctx)) {
      const buffer = ctx.createBuffer(1, ctx.sampleRate, ctx.sampleRate);
      const data = buffer.getChannelData(0);
      for (let i = 0; i < data.length; i++) data[i] = Math.random() * 2 - 1;
      noises.set(ctx, buffer);
    }
    return noises.get(ctx);
  }

  function frequency(pitch) { return 440 * Math.pow(2, (pitch - 69) / 12); }

  // General MIDI program families (program / 8) -> waveform and a lowpass cutoff multiplier.
  function timbre(program) {
    const family = Math.floor(program / 8);
    if (family === 0 || family === 3) return { wave: "triangle", bright: 10 };   // pianos, guitars
    if (family === 1) return { wave: "sine", bright: 20 };                       // chromatic percussion
    if (family === 2) return { wave: "square", bright: 6 };                      // organs
    if (family === 4) return { wave: "sawtooth", bright: 3 };                    // basses
    if (family === 5 || family === 6) return { wave: "sawtooth", bright: 5 };    // strings, ensembles
    if (family >= 7 && family <= 9) return { wave: "square", bright: 8 };        // brass, reeds, pipes
    return { wave: "triangle", bright: 8 };
  }

  function pitched(ctx, out, when, duration, pitch, velocity, program) {
    const { wave, bright } = timbre(program);
    const osc = ctx.createOscillator();
    osc.type = wave;
    osc.frequency.value = frequency(pitch);
    const filter = ctx.createBiquadFilter();
    filter.type = "lowpass";
    filter.frequency.value = Math.min(16000, frequency(pitch) * bright);
    const env = ctx.createGain();
    const peak = 0.15 + 0.85 * velocity / 127;
    const release = 0.08;
    env.gain.setValueAtTime(0, when);
    env.gain.linearRampToValueAtTime(peak, when + 0.008);
    env.gain.exponentialRampToValueAtTime(peak * 0.55, when + 0.008 + Math.min(0.3, duration));
    env.gain.setValueAtTime(peak * 0.55, when + Math.max(duration, 0.02));
    env.gain.linearRampToValueAtTime(0, when + Math.max(duration, 0.02) + release);
    osc.connect(filter).connect(env).connect(out);
    osc.start(when);
    osc.stop(when + Math.max(duration, 0.02) + release + 0.02);
  }

  function noiseHit(ctx, out, when, type, cutoff, length, level) {
    const src = ctx.createBufferSource();
    src.buffer = noiseOf(ctx);
    const filter = ctx.createBiquadFilter();
    filter.type = type;
    filter.frequency.value = cutoff;
    const env = ctx.createGain();
    env.gain.setValueAtTime(level, when);
    env.gain.exponentialRampToValueAtTime(0.001, when + length);
    src.connect(filter).connect(env).connect(out);
    src.start(when, Math.random() * 0.5);
    src.stop(when + length + 0.02);
  }

  function toneHit(ctx, out, when, from, to, length, level) {
    const osc = ctx.createOscillator();
    osc.frequency.setValueAtTime(from, when);
    osc.frequency.exponentialRampToValueAtTime(to, when + length);
    const env = ctx.createGain();
    env.gain.setValueAtTime(level, when);
    env.gain.exponentialRampToValueAtTime(0.001, when + length);
    osc.connect(env).connect(out);
    osc.start(when);
    osc.stop(when + length + 0.02);
  }

  // General MIDI drum map (channel 10): the key picks the instrument, not a pitch.
  function drum(ctx, out, when, key, velocity) {
    const level = 0.2 + 0.8 * velocity / 127;
    if (key === 35 || key === 36) toneHit(ctx, out, when, 150, 45, 0.35, level);                  // kicks
    else if (key === 38 || key === 40 || key === 37 || key === 39) {                               // snares, claps
      noiseHit(ctx, out, when, "bandpass", 1800, 0.18, level);
      toneHit(ctx, out, when, 220, 160, 0.08, level * 0.5);
    } else if (key === 42 || key === 44) noiseHit(ctx, out, when, "highpass", 7000, 0.05, level * 0.6);  // closed hats
    else if (key === 46) noiseHit(ctx, out, when, "highpass", 7000, 0.3, level * 0.6);                   // open hat
    else if (key === 49 || key === 51 || key === 52 || key === 55 || key === 57 || key === 59)
      noiseHit(ctx, out, when, "highpass", 5000, 0.9, level * 0.5);                                      // cymbals
    else if (key >= 41 && key <= 50) toneHit(ctx, out, when, 60 + (key - 41) * 18, 50 + (key - 41) * 12, 0.3, level); // toms
    else noiseHit(ctx, out, when, "bandpass", 400 + key * 40, 0.12, level * 0.7);                     // the rest
  }

  // Play notes ([start_s, end_s, pitch, velocity, program, isDrum], sorted by start).
  // Returns {stop(), duration, startedAt, context, analyser}; options.onEnd runs when it finishes or is stopped.
  function play(notes, options = {}) {
    const ctx = audio();
    if (ctx.state === "suspended") ctx.resume();
    const master = ctx.createGain();
    master.gain.value = MASTER_GAIN;
    const limiter = ctx.createDynamicsCompressor();
    master.connect(limiter).connect(ctx.destination);
    const analyser = ctx.createAnalyser();  // what is heard, for a level meter (or a test)
    limiter.connect(analyser);
    const duration = notes.reduce((end, n) => Math.max(end, n[1]), 0);
    const startedAt = ctx.currentTime + 0.1;
    let next = 0;
    let finished = false;

    function schedule() {
      const horizon = ctx.currentTime + LOOKAHEAD_S;
      while (next < notes.length && startedAt + notes[next][0] < horizon) {
        const [start, end, pitch, velocity, program, isDrum] = notes[next++];
        const when = Math.max(startedAt + start, ctx.currentTime);
        if (isDrum) drum(ctx, master, when, pitch, velocity);
        else pitched(ctx, master, when, end - start, pitch, velocity, program);
      }
      if (ctx.currentTime > startedAt + duration + 0.3) finish();
    }
    function finish() {
      if (finished) return;
      finished = true;
      clearInterval(timer);
      master.gain.setTargetAtTime(0, ctx.currentTime, 0.02);
      setTimeout(() => { master.disconnect(); limiter.disconnect(); }, 200);
      if (options.onEnd) options.onEnd();
    }
    const timer = setInterval(schedule, TICK_MS);
    schedule();
    return { stop: finish, duration, startedAt, context: ctx, analyser };
  }

  // Render the whole piece offline (no speakers, no waiting): a Promise of a mono AudioBuffer.
  function render(notes) {
    const duration = notes.reduce((end, n) => Math.max(end, n[1]), 0) + 1;
    const ctx = new OfflineAudioContext(1, Math.ceil(duration * RENDER_RATE), RENDER_RATE);
    const master = ctx.createGain();
    master.gain.value = MASTER_GAIN;
    master.connect(ctx.destination);
    for (const [start, end, pitch, velocity, program, isDrum] of notes) {
      if (isDrum) drum(ctx, master, start, pitch, velocity);
      else pitched(ctx, master, start, end - start, pitch, velocity, program);
    }
    return ctx.startRendering();
  }

  return { play, render };
})();
