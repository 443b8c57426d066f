// Admin page: enrol from the camera (each shot checked by the server, a thumbnail of each one
// kept), and the people: access, passes, face login, removal. The people list is re-read from
// the server after every change, so it always shows what the server holds.
(function () {
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const video = document.getElementById('preview');
  const canvas = document.getElementById('frame');
  const shoot = document.getElementById('shoot');
  const nameInput = document.getElementById('name');
  const status = document.getElementById('status');
  const shots = document.getElementById('shots');
  const people = document.getElementById('people');

  function tell(element, text, isError) {
    element.textContent = text;
    element.className = isError ? 'error' : '';
  }
  const say = (text, isError) => tell(status, text, isError);
  const sayAboutPeople = (text, isError) => tell(document.getElementById('people-status'), text, isError);

  async function call(method, path, body) {
    const headers = { 'X-CSRF-Token': token };
    const options = { method, credentials: 'same-origin', headers };
    if (body instanceof FormData) options.body = body;
    else if (body !== undefined) { headers['Content-Type'] = 'application/json'; options.body = JSON.stringify(body); }
    const response = await fetch(path, options);
    const answer = await response.json().catch(() => ({}));
    return { ok: response.ok, answer };
  }
  const personPath = (name) => '/api/v1/admin/people/' + encodeURIComponent(name);

  // the people section as the server renders it now
  async function refreshPeople(message) {
    const response = await fetch('/admin', { credentials: 'same-origin' });
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), 'text/html');
    const fresh = page.getElementById('people');
    if (fresh) people.innerHTML = fresh.innerHTML;
    if (message) sayAboutPeople(message, false);
  }

  async function start() {
    if (!window.isSecureContext || !navigator.mediaDevices) {
      say('The camera needs HTTPS or localhost.', true);
      return;
    }
    try {
      video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'user' }, audio: false });
      await video.play();
      shoot.disabled = false;
    } catch (error) {
      say('The camera could not be started (' + (error && error.name ? error.name : 'unknown error') + ').', true);
    }
  }

  shoot.addEventListener('click', async () => {
    const name = nameInput.value.trim();
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) { say('Type a name first: letters, digits, - or _.', true); nameInput.focus(); return; }
    shoot.disabled = true;
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext('2d').drawImage(video, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.92));
    const form = new FormData();
    form.append('photo', blob, 'shot.jpg');
    const { ok, answer } = await call('POST', personPath(name) + '/photos', form);
    if (!ok) {
      say('Not kept: ' + (answer.message || 'the server refused it') + '.', true);
    } else if (answer.duplicate) {
      say('That photo was already kept; it is not counted twice. ' + answer.person + ' has ' + answer.templates + ' photo(s).', false);
    } else {
      const item = document.createElement('li');
      const image = document.createElement('img');
      image.src = URL.createObjectURL(blob);
      image.alt = 'Photo ' + answer.templates + ' of ' + answer.person;
      item.appendChild(image);
      shots.appendChild(item);
      say('Kept: ' + answer.person + ' now has ' + answer.templates + ' photo(s).', false);
      await refreshPeople();
    }
    shoot.disabled = false;
  });

  function numbers(text) {
    const words = text.split(/[\s,]+/).filter(Boolean);
    const floors = words.map((word) => Number(word));
    return floors.every(Number.isInteger) ? floors : null;
  }

  // one listener for the whole section: it is replaced after every change
  people.addEventListener('click', async (event) => {
    const button = event.target.closest('button');
    if (!button || button.type === 'submit') return;
    const name = button.dataset.name;
    if (button.classList.contains('remove')) {
      if (!window.confirm('Remove ' + name + ' and all their photos?')) return;
      const { ok, answer } = await call('DELETE', personPath(name));
      if (ok) await refreshPeople(name + ' is removed.');
      else sayAboutPeople('Could not remove ' + name + ': ' + (answer.message || 'refused') + '.', true);
    } else if (button.classList.contains('face-login')) {
      const enabled = button.dataset.enable === 'true';
      if (!enabled && !window.confirm('Turn off face login for ' + name + '? Their sessions end now.')) return;
      const { ok, answer } = await call('PUT', personPath(name) + '/login', { enabled });
      if (ok) await refreshPeople('Face login for ' + name + ' is ' + (enabled ? 'on.' : 'off.'));
      else sayAboutPeople('Could not change face login: ' + (answer.message || 'refused') + '.', true);
    } else if (button.classList.contains('revoke-pass')) {
      const { ok, answer } = await call('DELETE', '/api/v1/admin/passes/' + encodeURIComponent(button.dataset.id));
      if (ok) await refreshPeople('The pass has ended.');
      else sayAboutPeople('Could not end the pass: ' + (answer.message || 'refused') + '.', true);
    }
  });

  people.addEventListener('submit', async (event) => {
    const form = event.target;
    event.preventDefault();
    const name = form.dataset.name;
    const field = (key) => form.elements[key].value.trim();
    if (form.classList.contains('access-form')) {
      const floors = field('floors') === '' ? [] : numbers(field('floors'));
      const home = field('home_floor');
      if (floors === null || (home !== '' && !Number.isInteger(Number(home)))) {
        sayAboutPeople('Floors are numbers, such as 0, 3, 4.', true);
        return;
      }
      const change = {
        display_name: field('display_name') || null,
        home_floor: home === '' ? null : Number(home),
        floors: floors.length ? floors : null,
        hours: field('hours').split('\n').map((line) => line.trim()).filter(Boolean),
        visitor: form.elements.visitor.checked,
      };
      const { ok, answer } = await call('PUT', personPath(name) + '/access', change);
      if (ok) await refreshPeople('Access for ' + name + ' is saved.');
      else sayAboutPeople('Not saved: ' + (answer.message || 'refused') + '.', true);
    } else if (form.classList.contains('pass-form')) {
      const floors = numbers(field('floors'));
      const hours = Number(field('hours'));
      if (!floors || !floors.length || !(hours > 0)) {
        sayAboutPeople('A pass needs floors (such as 4) and a number of hours.', true);
        return;
      }
      const { ok, answer } = await call('POST', personPath(name) + '/passes', { floors, valid_for_secs: Math.round(hours * 3600) });
      if (ok) await refreshPeople(name + ' has a pass for ' + hours + ' hour(s).');
      else sayAboutPeople('No pass given: ' + (answer.message || 'refused') + '.', true);
    }
  });

  start();
})();
