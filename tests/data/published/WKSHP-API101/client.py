"""Client for {{ WORKSHOP }}."""
{% raw %}
TEMPLATE = "{{ not expanded }}"
{% endraw %}
PASSWORD = "{{ PASSSTU }}"
{% if STDID is even %}
EVEN = True
{% else %}
EVEN = False
{% endif %}
