// Login page: camera preview, capture a frame, upload it, say what happened in plain words.
(function () {
  const video = document.getElementById('preview');
  const canvas = document.getElementById('frame');
  const button = document.getElementById('login');
  const status = document.getElementById('status');
  const instruction = document.getElementById('instruction');
  // "challenge": the server asks for head turns and a burst of frames; else one frame
  const pad = button.dataset.pad;

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? 'error' : '';
  }

  const messages = {
    no_face: 'No face found. Look straight at the camera, with your face in the light.',
    face_too_small: 'Your face is too small or too dark in the picture. Come closer to the camera.',
    not_recognized: 'Not recognised. If you are enrolled, try again facing the camera; otherwise ask the building manager to enrol you.',
    bad_image: 'The camera picture could not be read. Please try again.',
    busy: 'The system is busy. Please try again in a moment.',
    login_disabled: 'Face login is turned off for you. Please ask the building manager.',
    pad_refused: 'We could not see a live face turning as asked. Press “Log in” and turn your head slowly the way the screen says.',
    challenge_expired: 'That took too long. Press “Log in” to try again.',
    challenge_unknown: 'Please press “Log in” again.',
    challenge_other_client: 'Please press “Log in” again.',
  };

  function show(text) {
    instruction.textContent = text || '';
    instruction.hidden = !text;
  }

  const sleep = (ms) => new Promise((resolve) => window.setTimeout(resolve, ms));
  const sides = { left: 'left', right: 'right' };

  // Asks for a challenge, shows its turns one after the other and captures a frame every
  // interval meanwhile: the burst and its nonce.
  async function captureChallenge() {
    const response = await fetch('/api/v1/login/challenge', { method: 'POST', credentials: 'same-origin' });
    const challenge = await response.json().catch(() => ({}));
    if (!response.ok) {
      return { error: challenge };
    }
    const count = Math.min(challenge.max_frames, 10);
    const perTurn = Math.ceil(count / challenge.turns.length);
    const frames = [];
    for (let i = 0; i < count; i += 1) {
      const turn = challenge.turns[Math.min(challenge.turns.length - 1, Math.floor(i / perTurn))];
      show((i < perTurn ? 'Turn your head slowly to your ' : 'Now to your ') + sides[turn] + ' ' + (turn === 'left' ? '←' : '→'));
      frames.push(await capture());
      await sleep(challenge.frame_interval_ms);
    }
    show('');
    return { nonce: challenge.nonce, frames };
  }

  // After too many attempts: a countdown, with "Log in" off until it ends.
  function waitThen(seconds) {
    let left = Math.max(1, seconds);
    const tick = () => {
      if (left <= 0) {
        button.disabled = false;
        say('You can try again now.');
        return;
      }
      say('Too many attempts. You can try again in ' + left + ' s.', true);
      left -= 1;
      window.setTimeout(tick, 1000);
    };
    button.disabled = true;
    tick();
  }

  async function start() {
    if (!window.isSecureContext || !navigator.mediaDevices) {
      say('The camera needs a secure connection. Open this page over HTTPS (for example through an ngrok tunnel, or the server\'s --tls options), or on this computer at http://localhost.', true);
      return;
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'user', width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
      video.srcObject = stream;
      await video.play();
      button.disabled = false;
      say('Ready. Look at the camera and press “Log in”.');
    } catch (error) {
      if (error && error.name === 'NotAllowedError') {
        say('Camera permission was denied. Allow the camera for this site in your browser settings, then reload the page.', true);
      } else if (error && error.name === 'NotFoundError') {
        say('No camera was found on this device.', true);
      } else {
        say('The camera could not be started (' + (error && error.name ? error.name : 'unknown error') + ').', true);
      }
    }
  }

  function capture() {
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext('2d').drawImage(video, 0, 0, canvas.width, canvas.height);
    return new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.9));
  }

  async function login() {
    button.disabled = true;
    say(pad === 'challenge' ? 'Keep your face in the picture and do what it says.' : 'Checking…');
    try {
      const form = new FormData();
      if (pad === 'challenge') {
        const burst = await captureChallenge();
        if (burst.error) {
          if (burst.error.error === 'busy') {
            say(messages.busy, true);
            button.disabled = false;
            return;
          }
          throw new Error(burst.error.message);
        }
        say('Checking…');
        form.append('nonce', burst.nonce);
        burst.frames.forEach((blob, i) => form.append('frame', blob, 'frame' + i + '.jpg'));
      } else {
        form.append('frame', await capture(), 'frame.jpg');
      }
      const response = await fetch('/api/v1/login', { method: 'POST', body: form, credentials: 'same-origin' });
      const body = await response.json().catch(() => ({}));
      if (response.ok) {
        say('Welcome, ' + body.person + '!');
        window.location.assign('/lift');
        return;
      }
      if (response.status === 429) {
        waitThen(parseInt(response.headers.get('Retry-After'), 10) || 30);
        return;
      } else {
        say(messages[body.error] || body.message || 'Something went wrong. Please try again.', true);
      }
    } catch (error) {
      show('');
      say('The server could not be reached. Check the connection and try again.', true);
    }
    button.disabled = false;
  }

  button.addEventListener('click', login);
  start();
})();
