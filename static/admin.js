// Admin page: enrol from the camera (each shot checked by the server), remove people.
(function () {
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const video = document.getElementById('preview');
  const canvas = document.getElementById('frame');
  const shoot = document.getElementById('shoot');
  const nameInput = document.getElementById('name');
  const status = document.getElementById('status');

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? 'error' : '';
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
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) { say('Type a name first: letters, digits, - or _.', true); return; }
    shoot.disabled = true;
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext('2d').drawImage(video, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.92));
    const form = new FormData();
    form.append('photo', blob, 'shot.jpg');
    const response = await fetch('/api/v1/admin/people/' + encodeURIComponent(name) + '/photos', {
      method: 'POST', body: form, credentials: 'same-origin', headers: { 'X-CSRF-Token': token },
    });
    const body = await response.json().catch(() => ({}));
    say(response.ok ? 'Kept: ' + body.person + ' now has ' + body.templates + ' photo(s).' : (body.message || 'Not kept.'), !response.ok);
    shoot.disabled = false;
  });

  document.querySelectorAll('.remove').forEach((button) => button.addEventListener('click', async () => {
    const name = button.dataset.name;
    if (!window.confirm('Remove ' + name + ' and all their photos?')) return;
    const response = await fetch('/api/v1/admin/people/' + encodeURIComponent(name), {
      method: 'DELETE', credentials: 'same-origin', headers: { 'X-CSRF-Token': token },
    });
    if (response.ok) window.location.reload();
    else say('Could not remove ' + name + '.', true);
  }));

  document.querySelectorAll('.face-login').forEach((button) => button.addEventListener('click', async () => {
    const name = button.dataset.name;
    const enabled = button.dataset.enable === 'true';
    if (!enabled && !window.confirm('Turn off face login for ' + name + '? Their sessions end now.')) return;
    const response = await fetch('/api/v1/admin/people/' + encodeURIComponent(name) + '/login', {
      method: 'PUT', credentials: 'same-origin',
      headers: { 'X-CSRF-Token': token, 'Content-Type': 'application/json' },
      body: JSON.stringify({ enabled }),
    });
    if (response.ok) window.location.reload();
    else say('Could not change ' + name + '\'s face login.', true);
  }));

  start();
})();
