from django.urls import path

from library import views

urlpatterns = [
    path("authors/n-plus-one/", views.authors_n_plus_one),
    path("authors/prefetch/", views.authors_prefetch),
    path("authors/<int:pk>/", views.author_detail),
    path("repeats/", views.repeats),
    path("raw/", views.raw_sql),
    path("secret/", views.secret),
    path("queries/<int:n>/", views.n_queries),
    path("raw-queries/<int:n>/", views.raw_queries),
    path("burn/alpha/", views.burn_alpha_view),
    path("burn/beta/", views.burn_beta_view),
    path("hello/", views.hello),
]
