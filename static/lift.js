// Lift panel: each car's floor and state live over server-sent events, the person's floors as
// buttons, a car chosen or left to the server, what became of the last press, log out.
(function () {
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const status = document.getElementById('status');
  const recall = document.getElementById('recall');
  const buttons = document.querySelectorAll('.floor-button');
  const cars = {};
  document.querySelectorAll('.car').forEach((card) => { cars[card.dataset.lift] = { card, lift: null }; });
  // the last press: which car took it, to say when it arrives or why it stopped
  let pending = null;

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? 'error' : '';
  }

  function nameOf(lift, number) {
    const found = lift.floors.find((f) => f.number === number);
    return found ? found.name : String(number);
  }

  function describe(lift) {
    switch (lift.state) {
      case 'idle': return 'Ready';
      case 'moving': return 'Going to floor ' + (lift.target_name || nameOf(lift, lift.target));
      case 'fault': return 'Out of service';
      default: return 'No contact with this lift';
    }
  }

  function chosenCar() {
    const picked = document.querySelector('input[name="car"]:checked');
    return picked && picked.value ? picked.value : null;
  }

  // a floor can be pressed when the chosen car (or any car, when the server chooses) can go there
  function refreshButtons() {
    const chosen = chosenCar();
    const recallOn = Object.values(cars).some((c) => c.lift && c.lift.recall_floor !== null);
    buttons.forEach((b) => {
      const floor = Number(b.dataset.floor);
      const candidates = Object.values(cars).filter((c) => c.lift
        && (!chosen || c.lift.lift === chosen)
        && c.lift.floors.some((f) => f.number === floor));
      const free = candidates.some((c) => c.lift.state === 'idle' && c.lift.floor !== floor);
      b.disabled = recallOn || !free;
    });
  }

  function follow(lift) {
    if (!pending || pending.lift !== lift.lift) return;
    if (lift.state === 'idle' && lift.floor === pending.floor) {
      say('Lift ' + lift.lift + ' has arrived at floor ' + lift.floor_name + '.');
      pending = null;
    } else if (lift.state === 'fault') {
      say('Lift ' + lift.lift + ' stopped: ' + (lift.fault || 'out of service') + '.', true);
      pending = null;
    } else if (lift.state === 'offline') {
      say('Lift ' + lift.lift + ' lost contact with the server.', true);
      pending = null;
    } else if (lift.state === 'idle' && lift.request_id === null && pending.seenMoving) {
      say('Lift ' + lift.lift + ' stopped at floor ' + lift.floor_name + '.', true);
      pending = null;
    } else if (lift.state === 'moving') {
      pending.seenMoving = true;
    }
  }

  function show(lift) {
    const car = cars[lift.lift];
    if (!car) return;
    car.lift = lift;
    const card = car.card;
    card.className = 'car ' + lift.state;
    card.querySelector('.floor-now').textContent = lift.floor_name !== null ? lift.floor_name : '–';
    card.querySelector('.car-state').textContent = describe(lift);
    const fault = card.querySelector('.car-fault');
    fault.hidden = lift.state !== 'fault';
    fault.querySelector('.reason').textContent = lift.fault ? lift.fault + '.' : '';
    const reset = card.querySelector('.reset-fault');
    if (reset) reset.hidden = lift.state !== 'fault';
    if (lift.recall_floor !== null) {
      document.getElementById('recall-floor').textContent = nameOf(lift, lift.recall_floor);
    }
    recall.hidden = lift.recall_floor === null;
    follow(lift);
    refreshButtons();
  }

  function sessionEnded() {
    window.location.assign('/?ended=1');
  }

  const events = new EventSource('/api/v1/lift/events');
  events.addEventListener('lift', (event) => show(JSON.parse(event.data)));
  events.onerror = async () => {
    say('Live updates interrupted; reconnecting…', true);
    // a stream that ends because the session did is not worth reconnecting
    const me = await fetch('/api/v1/me', { credentials: 'same-origin' }).catch(() => null);
    if (me && me.status === 401) { events.close(); sessionEnded(); }
  };
  events.onopen = () => { if (!pending) say(''); };
  document.querySelectorAll('input[name="car"]').forEach((r) => r.addEventListener('change', refreshButtons));

  function newRequestId() {
    const bytes = new Uint8Array(8);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  async function send(method, path, body) {
    const response = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': token },
      body: JSON.stringify(body || {}),
    });
    return { response, body: await response.json().catch(() => ({})) };
  }

  buttons.forEach((button) => button.addEventListener('click', async () => {
    // one id per press: a retried request cannot move a lift twice
    const request = { floor: Number(button.dataset.floor), request_id: newRequestId() };
    const chosen = chosenCar();
    if (chosen) request.lift = chosen;
    let result;
    try {
      result = await send('POST', '/api/v1/lift/move', request);
    } catch (e) {
      result = await send('POST', '/api/v1/lift/move', request).catch(() => null);
    }
    if (!result) { say('No answer from the server; check the connection.', true); return; }
    const { response, body } = result;
    if (response.status === 401) { sessionEnded(); return; }
    if (!response.ok) { say(body.message || 'The lift refused.', true); return; }
    pending = { lift: body.lift, floor: body.floor, seenMoving: false };
    say('Lift ' + body.lift + ' is going to floor ' + button.textContent + '.');
  }));

  document.querySelectorAll('.reset-fault').forEach((reset) => reset.addEventListener('click', async () => {
    const lift = reset.closest('.car').dataset.lift;
    const { response, body } = await send('POST', '/api/v1/admin/lifts/' + encodeURIComponent(lift) + '/reset');
    say(response.ok ? 'Fault cleared on lift ' + lift + '.' : (body.message || 'Could not clear the fault.'), !response.ok);
  }));

  document.getElementById('logout').addEventListener('click', async () => {
    await send('POST', '/api/v1/logout').catch(() => null);
    window.location.assign('/?bye=1');
  });
})();
