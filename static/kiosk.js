// Lobby kiosk: "Start" asks the camera board beside it to capture; the result comes live on
// the kiosk's event stream; a booked car is shown in large type; the page returns to "Look at
// the camera" a few seconds after any result. It never keeps a resident's session.
(function () {
  const root = document.querySelector('.kiosk');
  const name = root.dataset.kiosk;
  const returnAfter = Number(root.dataset.returnAfter || 8) * 1000;
  const panes = {
    ready: document.getElementById('kiosk-ready'),
    busy: document.getElementById('kiosk-busy'),
    result: document.getElementById('kiosk-result'),
  };
  const step = document.getElementById('kiosk-step');
  const turns = document.getElementById('kiosk-turns');
  const headline = document.getElementById('kiosk-headline');
  const detail = document.getElementById('kiosk-detail');
  const floors = document.getElementById('kiosk-floors');
  let attempt = null;
  let backTimer = null;

  function showPane(which) {
    Object.entries(panes).forEach(([key, pane]) => { pane.hidden = key !== which; });
  }

  function backLater() {
    clearTimeout(backTimer);
    backTimer = setTimeout(() => { attempt = null; floors.textContent = ''; showPane('ready'); }, returnAfter);
  }

  // the server's messages are phrases ("face not recognised"): shown as sentences
  const sentence = (text) => text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? '' : '.');

  const sayTurn = { left: 'Turn your head slowly to your left', right: 'Turn your head slowly to your right' };

  function heard(event) {
    if (attempt && event.attempt_id && event.attempt_id !== attempt) return;
    switch (event.stage) {
      case 'capturing':
        attempt = event.attempt_id;
        showPane('busy');
        step.textContent = 'Look at the camera';
        turns.textContent = (event.turns || []).map((t) => sayTurn[t] || t).join(', then ');
        break;
      case 'checking':
        step.textContent = 'Checking…';
        turns.textContent = '';
        break;
      case 'booked':
        showPane('result');
        headline.textContent = 'Lift ' + event.lift + ' to floor ' + event.floor_name;
        detail.textContent = 'Hello ' + event.name + '. Lift ' + event.lift + ' is on its way.';
        floors.textContent = '';
        backLater();
        break;
      case 'recognized':
        showPane('result');
        headline.textContent = 'Hello ' + event.name;
        detail.textContent = event.note ? event.note : 'Which floor?';
        floors.textContent = '';
        event.floors.forEach((floor) => {
          const button = document.createElement('button');
          button.type = 'button';
          button.className = 'floor-button';
          button.textContent = floor.name;
          button.addEventListener('click', () => ride(event.attempt_id, floor.number));
          floors.appendChild(button);
        });
        backLater();
        break;
      case 'refused':
        showPane('result');
        headline.textContent = 'Sorry';
        detail.textContent = sentence(event.message);
        floors.textContent = '';
        backLater();
        break;
      default:
        break;
    }
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body || {}),
    });
    return { response, body: await response.json().catch(() => ({})) };
  }

  async function ride(attemptId, floor) {
    const { response, body } = await post('/api/v1/kiosks/' + encodeURIComponent(name) + '/rides', { attempt_id: attemptId, floor });
    if (!response.ok) {
      detail.textContent = body.message ? sentence(body.message) : 'The lift could not be booked.';
      backLater();
    }
  }

  document.getElementById('kiosk-start').addEventListener('click', async () => {
    clearTimeout(backTimer);
    const { response, body } = await post('/api/v1/kiosks/' + encodeURIComponent(name) + '/attempts');
    if (!response.ok) {
      showPane('result');
      headline.textContent = 'Not available';
      detail.textContent = body.message ? sentence(body.message) : 'The kiosk could not start.';
      backLater();
      return;
    }
    heard(body);
  });

  const events = new EventSource('/api/v1/kiosks/' + encodeURIComponent(name) + '/events');
  events.addEventListener('kiosk', (event) => heard(JSON.parse(event.data)));
})();
