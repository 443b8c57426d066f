// Lift panel: live floor and state over server-sent events, one button per floor, log out.
(function () {
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const floor = document.getElementById('floor');
  const state = document.getElementById('state');
  const status = document.getElementById('status');
  const buttons = document.querySelectorAll('.floor-button');

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? 'error' : '';
  }

  function show(lift) {
    floor.textContent = lift.floor;
    state.textContent = lift.online ? lift.state + (lift.target !== null && lift.target !== undefined ? ' to ' + lift.target : '') : 'offline';
    buttons.forEach((b) => { b.disabled = !lift.online || lift.state === 'moving'; });
  }

  const events = new EventSource('/api/v1/lift/events');
  events.addEventListener('lift', (event) => show(JSON.parse(event.data)));
  events.onerror = () => say('Live updates interrupted; reconnecting…', true);
  events.onopen = () => say('');

  async function post(path, body) {
    const response = await fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': token },
      body: JSON.stringify(body || {}),
    });
    return { response, body: await response.json().catch(() => ({})) };
  }

  buttons.forEach((button) => button.addEventListener('click', async () => {
    const { response, body } = await post('/api/v1/lift/move', { floor: Number(button.dataset.floor) });
    if (response.status === 401) { window.location.assign('/'); return; }
    say(response.ok ? 'Going to floor ' + button.dataset.floor + '.' : (body.message || 'The lift refused.'), !response.ok);
  }));

  document.getElementById('logout').addEventListener('click', async () => {
    await post('/api/v1/logout');
    window.location.assign('/');
  });
})();
