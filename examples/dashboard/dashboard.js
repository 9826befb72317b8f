// A live table of /devices/*: what people build with happn. It loads the current devices with
// get, follows every set and remove with one subscription, writes with set and remove, and asks
// for a login only when the server is secure. Runs unchanged against happn 2.x or happn-rs.
/* global HappnClient */
(function () {
  const $ = (id) => document.getElementById(id);
  const rows = new Map(); // device id -> <tr>
  const server = { host: location.hostname, port: Number(location.port) || (location.protocol === 'https:' ? 443 : 80), protocol: location.protocol.slice(0, -1) };
  let client = null;

  function status(text, kind) {
    $('status').textContent = text;
    $('status').className = 'status ' + kind;
  }

  function deviceId(path) {
    return path.slice('/devices/'.length);
  }

  function render(path, data, meta) {
    const id = deviceId(path);
    let tr = rows.get(id);
    if (!tr) {
      tr = document.createElement('tr');
      tr.dataset.device = id;
      tr.innerHTML = '<td class="id"></td><td class="data"></td><td class="modified"></td><td><button class="remove" type="button">Remove</button></td>';
      tr.querySelector('.remove').addEventListener('click', () => client.remove(path).catch(showFormError));
      rows.set(id, tr);
      const after = [...rows.keys()].sort().indexOf(id);
      const body = $('devices');
      body.insertBefore(tr, body.children[after] || null);
    }
    const shown = Object.assign({}, data);
    delete shown._meta;
    tr.querySelector('.id').textContent = id;
    tr.querySelector('.data').textContent = JSON.stringify(shown);
    const when = meta && (meta.modified || meta.created);
    tr.querySelector('.modified').textContent = when ? new Date(when).toLocaleTimeString() : '';
    tr.classList.remove('flash');
    void tr.offsetWidth; // restart the highlight
    tr.classList.add('flash');
    $('empty').hidden = rows.size > 0;
  }

  function drop(path) {
    const id = deviceId(path);
    const tr = rows.get(id);
    if (tr) tr.remove();
    rows.delete(id);
    $('empty').hidden = rows.size > 0;
  }

  function showFormError(e) {
    $('form-error').textContent = e ? e.message || e.name || String(e) : '';
  }

  async function start(credentials) {
    status('connecting…', 'connecting');
    client = await HappnClient.create({ config: Object.assign({}, server, credentials) });
    client.onEvent('reconnect-scheduled', () => status('reconnecting…', 'reconnecting'));
    client.onEvent('reconnect-successful', () => status('connected', 'connected'));
    client.onEvent('connection-ended', () => status('disconnected', 'offline'));
    status('connected' + (client.session.user ? ' as ' + client.session.user.username : ''), 'connected');
    $('login').hidden = true;
    $('app').hidden = false;

    await client.on('/devices/*', { event_type: 'all' }, (data, meta) => {
      if (meta.action && meta.action.indexOf('/REMOVE@') === 0) drop(meta.path);
      else render(meta.path, data, meta);
    });
    for (const item of await client.get('/devices/*')) render(item._meta.path, item, item._meta);
    $('empty').hidden = rows.size > 0;
  }

  $('device-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    let data;
    try {
      data = JSON.parse(form.data.value);
      if (!data || typeof data !== 'object' || Array.isArray(data)) throw new Error('data must be a JSON object');
    } catch (e) {
      return showFormError(e);
    }
    showFormError(null);
    try {
      await client.set('/devices/' + form.id.value, data);
      form.reset();
    } catch (e) {
      showFormError(e);
    }
  });

  $('login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('login-error').textContent = '';
    try {
      await start({ username: ev.target.username.value, password: ev.target.password.value });
    } catch (e) {
      status('not connected', 'offline');
      $('login-error').textContent = e.message || e.name;
    }
  });

  // Insecure servers let anyone in; secure ones refuse the anonymous login and we ask.
  start({}).catch((e) => {
    status('log in to connect', 'offline');
    $('login').hidden = false;
    if (e.name !== 'AccessDenied') $('login-error').textContent = e.message || e.name;
  });
})();
