// Canvas renderer of the anima character: the same look as anima/render/character.py (palette,
// layout: full body on the left, face close-up on the right, tags, state badge and caption).
// Inputs: face = 112 floats (anima/face/params.py layout), joints = 66 floats (22 x 3, metres, Y up).
"use strict";

const Avatar = (() => {
  const C = {
    bgTop: "rgb(44,52,68)", bgBottom: "rgb(26,31,42)", panelTop: "rgb(58,70,92)", panelBottom: "rgb(34,41,56)",
    floor: "rgb(70,80,100)", shadow: "rgb(22,26,35)", skin: "rgb(242,203,176)", skinShade: "rgb(214,164,138)",
    blush: "rgba(240,176,160,0.8)", hair: "rgb(72,52,48)", shirt: "rgb(62,146,170)", shirtShade: "rgb(48,118,140)",
    pants: "rgb(60,66,96)", shoes: "rgb(40,36,40)", lips: "rgb(204,112,116)", mouthInside: "rgb(70,22,36)",
    teeth: "rgb(250,248,242)", eyeWhite: "rgb(250,250,246)", iris: "rgb(78,124,168)", pupil: "rgb(24,24,32)",
    lash: "rgb(46,36,40)", text: "rgb(236,240,246)", textDim: "rgb(150,160,178)", captionBg: "rgb(18,22,30)",
    tagBg: "rgb(46,54,70)", meterOff: "rgb(70,80,98)",
    agent: "rgb(56,190,170)", user: "rgb(160,124,240)",
    states: { idle: "rgb(118,128,146)", listening: "rgb(66,150,230)", thinking: "rgb(236,168,48)", speaking: "rgb(72,190,112)" },
  };
  // ARKit indices inside expression[0:52] (anima/face/params.py ARKIT_NAMES order).
  const K = { blinkL: 0, wideL: 6, blinkR: 7, wideR: 13, close: 18, funnel: 19, pucker: 20, smileL: 23, smileR: 24,
    frownL: 25, frownR: 26, stretchL: 29, stretchR: 30, pressL: 35, pressR: 36, lowerDownL: 37, lowerDownR: 38,
    upperUpL: 39, upperUpR: 40, browDownL: 41, browDownR: 42, browInnerUp: 43, browOuterUpL: 44, browOuterUpR: 45 };
  const JAW_OPEN_MAX = 0.40;
  const CHAINS = [[0, 2, 5, 8, 11], [0, 1, 4, 7, 10], [0, 3, 6, 9, 12, 15], [9, 14, 17, 19, 21], [9, 13, 16, 18, 20]];
  const clamp = (x, a, b) => Math.max(a, Math.min(b, x));

  function gradient(ctx, x0, y0, x1, y1, top, bottom) {
    const g = ctx.createLinearGradient(0, y0, 0, y1);
    g.addColorStop(0, top); g.addColorStop(1, bottom);
    ctx.fillStyle = g; ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
  }

  function drawBody(ctx, J, box) {
    const [x0, y0, x1, y1] = box;
    const scale = 0.8 * (y1 - y0) / 1.8, floorY = y1 - 0.08 * (y1 - y0);
    const cx = (x0 + x1) / 2 - J[0] * scale * 0;  // front view: subject's left (+X) on the image's right
    const px = (j) => [cx + (J[3 * j] - J[0] * 0.6) * scale, floorY - J[3 * j + 1] * scale];
    ctx.fillStyle = C.shadow; ctx.beginPath(); ctx.ellipse(cx, floorY + 4, 0.25 * scale, 0.04 * scale, 0, 0, 2 * Math.PI); ctx.fill();
    ctx.strokeStyle = C.floor; ctx.lineWidth = 2; ctx.beginPath(); ctx.moveTo(x0 + 20, floorY + 4); ctx.lineTo(x1 - 20, floorY + 4); ctx.stroke();
    const limb = (a, b, w, color) => {
      const [ax, ay] = px(a), [bx, by] = px(b);
      ctx.strokeStyle = color; ctx.lineWidth = w * scale; ctx.lineCap = "round";
      ctx.beginPath(); ctx.moveTo(ax, ay); ctx.lineTo(bx, by); ctx.stroke();
    };
    for (const [a, b] of [[1, 4], [4, 7], [2, 5], [5, 8]]) limb(a, b, 0.13, C.pants);
    for (const [a, b] of [[7, 10], [8, 11]]) limb(a, b, 0.09, C.shoes);
    // torso: hips and shoulders
    const q = [px(2), px(1), px(16), px(17)];
    ctx.fillStyle = C.shirt; ctx.beginPath(); ctx.moveTo(...q[0]);
    for (const p of q.slice(1)) ctx.lineTo(...p);
    ctx.closePath(); ctx.fill(); ctx.strokeStyle = C.shirt; ctx.lineWidth = 0.1 * scale; ctx.lineJoin = "round"; ctx.stroke();
    limb(0, 9, 0.22, C.shirt);
    ctx.fillStyle = C.pants; const h1 = px(1), h2 = px(2);
    ctx.fillRect(Math.min(h1[0], h2[0]) - 0.06 * scale, h1[1] - 0.05 * scale, Math.abs(h1[0] - h2[0]) + 0.12 * scale, 0.12 * scale);
    for (const [a, b] of [[16, 18], [17, 19]]) limb(a, b, 0.09, C.shirtShade);
    for (const [a, b] of [[18, 20], [19, 21]]) limb(a, b, 0.07, C.skin);
    for (const w of [20, 21]) { const [hx, hy] = px(w); ctx.fillStyle = C.skin; ctx.beginPath(); ctx.arc(hx, hy, 0.045 * scale, 0, 2 * Math.PI); ctx.fill(); }
    limb(12, 15, 0.07, C.skinShade);
    const [hx, hy] = px(15);
    ctx.fillStyle = C.hair; ctx.beginPath(); ctx.arc(hx, hy - 0.03 * scale, 0.115 * scale, 0, 2 * Math.PI); ctx.fill();
    ctx.fillStyle = C.skin; ctx.beginPath(); ctx.ellipse(hx, hy + 0.01 * scale, 0.095 * scale, 0.11 * scale, 0, 0, 2 * Math.PI); ctx.fill();
    return [hx, hy, scale];
  }

  function drawFace(ctx, f, box) {
    const [x0, y0, x1, y1] = box;
    const u = (y1 - y0) * 0.2, cx = (x0 + x1) / 2, cy = y0 + (y1 - y0) * 0.42;
    const pitch = f[103], yaw = f[104], roll = f[105];
    const w = (i) => clamp(f[i], 0, 1);
    const jaw = clamp(f[100] / JAW_OPEN_MAX, 0, 1);
    // shoulders
    ctx.fillStyle = C.shirt; ctx.beginPath(); ctx.ellipse(cx, y1 + u * 0.3, u * 2.6, u * 1.3, 0, Math.PI, 2 * Math.PI); ctx.fill();
    ctx.fillStyle = C.skinShade; ctx.fillRect(cx - u * 0.32, cy + u * 0.6, u * 0.64, u * 0.9);
    ctx.save();
    ctx.translate(cx - yaw * u * 0.9, cy + pitch * u * 0.8); ctx.rotate(-roll);
    const sx = 1 - Math.abs(yaw) * 0.25, fx = -yaw * u * 0.55, fy = pitch * u * 0.5;  // features shift with the turn
    ctx.fillStyle = C.hair; ctx.beginPath(); ctx.ellipse(0, -u * 0.2, u * 1.08, u * 1.12, 0, 0, 2 * Math.PI); ctx.fill();
    ctx.fillStyle = C.skin;
    for (const s of [-1, 1]) { ctx.beginPath(); ctx.ellipse(s * u * 0.98 * sx + fx * 0.3, u * 0.05, u * 0.16, u * 0.24, 0, 0, 2 * Math.PI); ctx.fill(); }
    ctx.beginPath(); ctx.ellipse(fx * 0.3, u * 0.12 + jaw * u * 0.05, u * 0.96 * sx, u * 1.1 + jaw * u * 0.06, 0, 0, 2 * Math.PI); ctx.fill();
    ctx.fillStyle = C.hair; ctx.beginPath(); ctx.ellipse(fx * 0.3, -u * 0.72, u * 0.98 * sx, u * 0.42, 0, Math.PI, 2 * Math.PI); ctx.fill();
    ctx.fillStyle = C.blush;
    for (const s of [-1, 1]) { ctx.beginPath(); ctx.ellipse(fx + s * u * 0.55 * sx, u * 0.28 + fy, u * 0.14, u * 0.07, 0, 0, 2 * Math.PI); ctx.fill(); }
    // eyes: subject's left eye on the image's right
    for (const [s, blinkI, wideI, eyeI, browDownI, browOuterI] of [[1, K.blinkL, K.wideL, 106, K.browDownL, K.browOuterUpL], [-1, K.blinkR, K.wideR, 109, K.browDownR, K.browOuterUpR]]) {
      const ex = fx + s * u * 0.36 * sx, ey = -u * 0.08 + fy;
      const open = clamp(1 - w(blinkI), 0, 1) * (1 + 0.35 * w(wideI));
      const rw = u * 0.2, rh = u * 0.12 * open;
      if (rh > 0.5) {
        ctx.save(); ctx.beginPath(); ctx.ellipse(ex, ey, rw, rh, 0, 0, 2 * Math.PI); ctx.fillStyle = C.eyeWhite; ctx.fill(); ctx.clip();
        const gx = ex - f[eyeI + 1] * u * 0.28 * s * s, gy = ey + f[eyeI] * u * 0.22;
        ctx.fillStyle = C.iris; ctx.beginPath(); ctx.arc(gx, gy, u * 0.095, 0, 2 * Math.PI); ctx.fill();
        ctx.fillStyle = C.pupil; ctx.beginPath(); ctx.arc(gx, gy, u * 0.045, 0, 2 * Math.PI); ctx.fill();
        ctx.restore();
      }
      ctx.strokeStyle = C.lash; ctx.lineWidth = u * 0.03; ctx.beginPath();
      ctx.ellipse(ex, ey, rw, Math.max(rh, 1), 0, Math.PI * 1.05, Math.PI * 1.95); ctx.stroke();
      if (rh <= 0.5) { ctx.beginPath(); ctx.moveTo(ex - rw, ey); ctx.quadraticCurveTo(ex, ey + u * 0.06, ex + rw, ey); ctx.stroke(); }
      // brow
      const raise = 0.6 * w(K.browInnerUp) + 0.5 * w(browOuterI) - 0.6 * w(browDownI);
      const by = ey - u * 0.25 - raise * u * 0.12, inner = ey - u * 0.25 - (w(K.browInnerUp) - w(browDownI)) * u * 0.14;
      ctx.strokeStyle = C.hair; ctx.lineWidth = u * 0.07; ctx.lineCap = "round"; ctx.beginPath();
      ctx.moveTo(ex + s * u * 0.22, by + u * 0.03); ctx.quadraticCurveTo(ex + s * u * 0.02, by - u * 0.07, ex - s * u * 0.18, inner);
      ctx.stroke();
    }
    // nose
    ctx.strokeStyle = C.skinShade; ctx.lineWidth = u * 0.03; ctx.beginPath();
    ctx.moveTo(fx - u * 0.07, u * 0.25 + fy); ctx.quadraticCurveTo(fx, u * 0.31 + fy, fx + u * 0.07, u * 0.25 + fy); ctx.stroke();
    // mouth: width from smile/stretch vs funnel/pucker, opening from the jaw unless lips are pressed
    const closeLips = clamp(w(K.close) + 0.5 * (w(K.pressL) + w(K.pressR)), 0, 1);
    const round = 0.5 * w(K.funnel) + 0.6 * w(K.pucker);
    const wide = 0.25 * (w(K.smileL) + w(K.smileR) + w(K.stretchL) + w(K.stretchR));
    const mw = u * (0.34 + 0.16 * wide - 0.14 * round), my = u * 0.55 + fy, mx = fx;
    const corner = u * 0.08 * (0.5 * (w(K.smileL) + w(K.smileR)) - 0.5 * (w(K.frownL) + w(K.frownR)));
    const open = u * (0.02 + 0.42 * jaw * (1 - closeLips) + 0.08 * round * jaw) + u * 0.05 * (w(K.lowerDownL) + w(K.upperUpL)) * (1 - closeLips);
    ctx.fillStyle = C.lips; ctx.beginPath();
    ctx.moveTo(mx - mw, my - corner);
    ctx.quadraticCurveTo(mx, my - u * 0.12 - open * 0.15, mx + mw, my - corner);
    ctx.quadraticCurveTo(mx, my + u * 0.12 + open, mx - mw, my - corner); ctx.fill();
    if (open > u * 0.05) {
      ctx.fillStyle = C.mouthInside; ctx.beginPath();
      ctx.ellipse(mx, my + open * 0.35, mw * 0.78, open * 0.5, 0, 0, 2 * Math.PI); ctx.fill();
      ctx.fillStyle = C.teeth; ctx.fillRect(mx - mw * 0.5, my + open * 0.35 - open * 0.5, mw, Math.min(u * 0.06, open * 0.3));
    } else {
      ctx.strokeStyle = C.mouthInside; ctx.lineWidth = u * 0.025; ctx.beginPath();
      ctx.moveTo(mx - mw * 0.9, my - corner); ctx.quadraticCurveTo(mx, my + u * 0.015, mx + mw * 0.9, my - corner); ctx.stroke();
    }
    ctx.restore();
  }

  function drawOverlay(ctx, W, H, faceBox, o) {
    const tag = (x, name, color, active, level) => {
      ctx.fillStyle = active ? color : C.tagBg; ctx.strokeStyle = color; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.roundRect(x, 12, 190, 30, 15); ctx.fill(); ctx.stroke();
      ctx.fillStyle = C.text; ctx.font = "bold 15px DejaVu Sans, sans-serif";
      let label = name; while (label.length > 3 && ctx.measureText(label).width > 96) label = label.slice(0, -2) + "\u2026";
      ctx.fillText(label, x + 14, 32);
      for (let i = 0; i < 8; i++) { ctx.fillStyle = i < Math.round(level * 8) ? C.text : C.meterOff; ctx.fillRect(x + 120 + i * 8, 20, 5, 14); }
    };
    const fx = faceBox[0];
    tag(fx + 12, o.agentName, C.agent, o.speaker === "agent", o.agentLevel);
    tag(fx + 214, o.userName, C.user, o.speaker === "user", o.userLevel);
    const color = C.states[o.state] || C.states.idle;
    ctx.fillStyle = color; ctx.beginPath(); ctx.roundRect(W - 150, 12, 136, 30, 15); ctx.fill();
    ctx.fillStyle = C.text; ctx.font = "bold 14px DejaVu Sans, sans-serif"; ctx.fillText("\u25CF " + o.state.toUpperCase(), W - 136, 32);
    ctx.fillStyle = C.captionBg; ctx.beginPath(); ctx.roundRect(fx + 24, H - 100, W - fx - 48, 80, 10); ctx.fill();
    if (o.caption) {
      ctx.fillStyle = o.speaker === "user" ? C.user : C.agent; ctx.fillRect(fx + 36, H - 88, 4, 56);
      ctx.fillStyle = C.text; ctx.font = "19px DejaVu Sans, sans-serif";
      const words = o.caption.split(" "), lines = []; let line = "";
      for (const word of words) {
        const t = line ? line + " " + word : word;
        if (ctx.measureText(t).width > W - fx - 110 && line) { lines.push(line); line = word; } else line = t;
      }
      if (line) lines.push(line);
      lines.slice(-2).forEach((l, i) => ctx.fillText(l, fx + 52, H - 64 + i * 28));
    }
    ctx.fillStyle = C.textDim; ctx.font = "12px DejaVu Sans, sans-serif"; ctx.fillText(o.time.toFixed(2).padStart(6, "0") + " s", 12, 22);
  }

  function draw(canvas, face, joints, overlay) {
    const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
    const bodyBox = [0, 0, Math.round(W / 3), H], faceBox = [Math.round(W / 3), 0, W, H];
    gradient(ctx, 0, 0, W, H, C.bgTop, C.bgBottom);
    gradient(ctx, faceBox[0], 0, W, H, C.panelTop, C.panelBottom);
    drawBody(ctx, joints, [bodyBox[0], 40, bodyBox[2], H]);
    drawFace(ctx, face, [faceBox[0], 50, W, H - 30]);
    drawOverlay(ctx, W, H, faceBox, overlay);
  }

  return { draw, CHAINS };
})();
